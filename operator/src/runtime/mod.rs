//! What every controller shares: one reconcile wrapper and one error policy
//! ([`reconcile`]), the watch caches ([`watch`]), the typed child toolkit ([`children`]) and
//! the Gateway API types the operator writes ([`gateway`]).
//!
//! A controller's `reconcile` reads top to bottom: observe (from its caches) → decide (a pure
//! function of what it observed, returning the desired children, status, events and requeue)
//! → apply (server-side, only what changed) → write status. Only the observe and apply steps
//! do I/O; `make check-controllers` fails when a `decide` module names an API client.

pub mod children;
pub mod gateway;
pub mod reconcile;
pub mod watch;
