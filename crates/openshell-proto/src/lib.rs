//! The gRPC contract between `openshell` (CLI), `openshell-gateway` and
//! `openshell-sandbox`, generated from `proto/` at build time.
//!
//! Owns: message and service definitions only. Does not own: behaviour.
//! Invariant: field numbers never change meaning; fields are only added.

#[allow(clippy::all, missing_debug_implementations, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("openshell.v1");
}
