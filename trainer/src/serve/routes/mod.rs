//! The HTTP routes of the server, by concern: who calls and how much ([`auth`]), what every
//! request costs the metrics ([`observe`]), the operational endpoints ([`info`]), the
//! validation of OpenAI requests into a generation plan ([`plan`]), the generation itself
//! ([`generate`]) and its answer as server-sent events ([`sse`]).

mod auth;
mod generate;
mod info;
mod observe;
mod plan;
mod sse;

pub use auth::{Caller, PUBLIC, UNAUTHENTICATED, api_auth};
pub use generate::{chat_completions, completions};
pub use info::{healthz, method_not_allowed, metrics, models, not_found, readyz, usage};
pub use observe::{observe, route_label};
pub use plan::{Plan, plan_chat, plan_completion};
