//! Watch caches: what a reconcile reads instead of asking the API server.

use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};

/// Drops what no reconcile reads (managed fields, the last-applied annotation) before an
/// object enters a cache: a good part of a typical object, times every object watched.
pub fn slim<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A watch of `api` that keeps `writer`'s cache (objects slimmed by `trim` first) and yields
/// every object it touches.
pub fn cached<K>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    trim: fn(&mut K),
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, wc)
        .default_backoff()
        .modify(move |o| {
            slim(o);
            trim(o);
        })
        .reflect(writer)
        .touched_objects()
}

/// No trimming beyond [`slim`].
pub fn keep<K>(_: &mut K) {}

/// `api` in `namespace`, or across the cluster.
pub fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The cached object `name` in `namespace`.
pub fn get<K>(store: &reflector::Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .map(|o| (*o).clone())
}
