//! `[fleet]`: what the replicas of one deployment share through the transport. Today that is
//! each partner's canary: started, promoted or aborted through any replica's admin API, it
//! applies on every replica (see [`crate::fleet`]).
//!
//! On Service Bus it is on by default, since replicas there compete for the same queues; on the
//! embedded queue (one process) it is off unless the table is given.

use std::time::Duration;

use serde::Deserialize;

use super::{Config, TransportConfig};

/// Where and how often replicas share their canaries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FleetConfig {
    /// Share canaries between replicas (default true); false keeps each replica's own.
    #[serde(default = "default_true")]
    pub shared_canaries: bool,
    /// The session-enabled queue whose session states hold the records (one session per
    /// partner). `sagahost entities apply` creates it.
    #[serde(default = "default_control_queue")]
    pub control_queue: String,
    /// How often each replica reads the records.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            shared_canaries: true,
            control_queue: default_control_queue(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }
}

impl FleetConfig {
    /// How often each replica reads the records.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
}

fn default_true() -> bool {
    true
}

fn default_control_queue() -> String {
    "sagahost-control".into()
}

fn default_poll_interval_ms() -> u64 {
    5_000
}

impl Config {
    /// The shared-canary settings in effect: `[fleet]` as given, else the defaults on Service
    /// Bus; `None` when canaries stay per replica.
    pub fn shared_canaries(&self) -> Option<FleetConfig> {
        let fleet = match (&self.fleet, &self.transport) {
            (Some(fleet), _) => fleet.clone(),
            (None, TransportConfig::Servicebus { .. }) => FleetConfig::default(),
            (None, TransportConfig::Embedded) => return None,
        };
        fleet.shared_canaries.then_some(fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn on_by_default_on_service_bus_only() {
        let embedded = config("[partners]");
        assert_eq!(embedded.shared_canaries(), None);
        let servicebus =
            config("[transport]\nkind = \"servicebus\"\nnamespace = \"x.servicebus.windows.net\"\n[partners]");
        assert_eq!(servicebus.shared_canaries(), Some(FleetConfig::default()));
        let off = config(
            "[fleet]\nshared-canaries = false\n[transport]\nkind = \"servicebus\"\nnamespace = \"x.servicebus.windows.net\"\n[partners]",
        );
        assert_eq!(off.shared_canaries(), None);
        let embedded_on = config("[fleet]\ncontrol-queue = \"ctl\"\npoll-interval-ms = 200\n[partners]");
        let fleet = embedded_on.shared_canaries().unwrap();
        assert_eq!(
            (fleet.control_queue.as_str(), fleet.poll_interval()),
            ("ctl", Duration::from_millis(200))
        );
    }
}
