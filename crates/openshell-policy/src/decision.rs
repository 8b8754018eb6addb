//! The vocabulary of an egress decision, shared by the proxy that makes
//! decisions and the tools that explain them: what was decided
//! ([`Verdict`], the L7 one) and which layer decided it ([`Layer`]).

pub use crate::l7::Verdict;

/// Which layer of the egress pipeline decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Who is calling could not be established (no caller to judge).
    Identity,
    /// Host, port and binary against the network policies.
    L4,
    /// The destination's addresses (loopback, private, metadata, the
    /// host's own).
    Ssrf,
    /// Method and path against an endpoint's rules, or a request's
    /// authority inside a tunnel.
    L7,
    /// The allowed request could not reach its upstream.
    Upstream,
    /// The request's credential placeholders (docs/providers.md): outside
    /// their binding, unknown, or in a body that is not rewritten.
    Credentials,
    /// A call to `inference.local`, routed or refused by the router.
    Inference,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Identity => "identity",
            Layer::L4 => "l4",
            Layer::Ssrf => "ssrf",
            Layer::L7 => "l7",
            Layer::Upstream => "upstream",
            Layer::Credentials => "credentials",
            Layer::Inference => "inference",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_read_as_events_and_explanations_write_them() {
        let all = [
            (Layer::Identity, "identity"),
            (Layer::L4, "l4"),
            (Layer::Ssrf, "ssrf"),
            (Layer::L7, "l7"),
            (Layer::Upstream, "upstream"),
        ];
        for (layer, text) in all {
            assert_eq!(layer.to_string(), text);
            assert_eq!(serde_json::to_value(layer).unwrap(), text);
        }
    }
}
