//! The part of the Gateway API (`gateway.networking.k8s.io/v1`) the operator writes and reads:
//! an `HTTPRoute` with parent Gateways, hostnames, one path-prefix rule with weighted Service
//! backends, and the Gateways' `Accepted` conditions in its status. Typed, so a misspelt field
//! does not compile; fields the operator does not set are left to their owners.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The Gateway API group and version.
pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// What the operator sets of an HTTPRoute.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    namespaced,
    status = "HTTPRouteStatus",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    /// The Gateways the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names the route answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<HTTPRouteRule>,
}

/// A parent Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Gateway's name.
    pub name: String,
    /// Its namespace (default: the route's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One listener of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// A rule: requests matching `matches` go to `backendRefs` by weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    /// Which requests.
    #[serde(default)]
    pub matches: Vec<HTTPRouteMatch>,
    /// Where they go.
    #[serde(default)]
    pub backend_refs: Vec<HTTPBackendRef>,
}

/// A request match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPRouteMatch {
    /// The path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,
}

/// A path match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPPathMatch {
    /// `PathPrefix`, `Exact` or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The path.
    pub value: String,
}

/// A weighted Service backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    /// `""` (the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Service.
    pub name: String,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Its share of the rule's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// What the Gateways report on a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPRouteStatus {
    /// One entry per parent that reported.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// One parent's report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent.
    pub parent_ref: ParentReference,
    /// The Gateway controller that wrote this.
    #[serde(default)]
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`, ….
    #[serde(default)]
    pub conditions: Vec<RouteCondition>,
}

/// The part of a parent's condition the operator reads (lenient: a Gateway controller's
/// malformed status never fails a reconcile).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RouteCondition {
    /// The condition type.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// Why.
    #[serde(default)]
    pub message: String,
}

/// Whether every Gateway that reported on the route accepted it: `Some((false, why))` when one
/// refused it, `None` while none has reported.
pub fn accepted(route: &HTTPRoute) -> Option<(bool, String)> {
    let parents = &route.status.as_ref()?.parents;
    let mut seen = false;
    for p in parents {
        for c in p.conditions.iter().filter(|c| c.type_ == "Accepted") {
            seen = true;
            if c.status != "True" {
                return Some((
                    false,
                    format!(
                        "Gateway {} did not accept the route: {}",
                        p.parent_ref.name, c.message
                    ),
                ));
            }
        }
    }
    seen.then(|| (true, String::new()))
}
