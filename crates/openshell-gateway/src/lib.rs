//! `openshell-gateway`: the control plane. It stores desired state and
//! drives sandboxes; it never decides an individual egress request (the
//! supervisor does).
//!
//! Owns: the API ([`api`]), durable state ([`store`]), the PKI ([`pki`]),
//! secrets at rest ([`secrets`]),
//! who may call what ([`auth`]) and the browser login page ([`login`]), the supervisors' sessions ([`session`]),
//! and the one-port server that speaks gRPC and plain HTTP ([`server`]).
//!
//! Invariants: every multi-row write is one transaction; internal errors
//! are logged and mapped to gRPC `Status` in one place ([`api::status`]);
//! mTLS is on unless the operator turns it off explicitly.

pub mod api;
pub mod auth;
pub mod drivers;
pub mod login;
pub mod pki;
pub mod probe;
pub mod secrets;
pub mod server;
pub mod session;
pub mod store;
