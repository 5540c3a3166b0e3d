//! Topics in the config: a partner that reads a topic's subscription instead of a queue
//! (`source = { topic = "contacts", subscription = "mdm" }`), and the topics, subscriptions and
//! rules the embedded queue serves (`[[topics]]`, in the format `sagahost broker --topics` reads).
//!
//! A partner's source becomes its queue as the Service Bus entity path
//! `<topic>/Subscriptions/<subscription>`, which both transports receive from like a queue, so
//! the rest of the host only ever sees a queue name.

use sagahost_transport::embedded::TopicSettings;
use sagahost_transport::servicebus::dialect::subscription_path;
use serde::Deserialize;

use super::{Config, TransportConfig};

/// Where a partner reads its messages when it is not a queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Source {
    /// The topic Dataverse (or a route) sends to.
    pub topic: String,
    /// The partner's subscription on it.
    pub subscription: String,
}

impl Source {
    /// The entity path the partner receives from.
    pub fn path(&self) -> String {
        subscription_path(&self.topic, &self.subscription)
    }
}

impl Config {
    /// Gives every partner with a `source` its queue (the subscription's path), and checks that
    /// each partner names exactly one of `queue` and `source`.
    pub(super) fn resolve_sources(&mut self) -> anyhow::Result<()> {
        for (name, partner) in &mut self.partners {
            match (&partner.source, partner.queue.is_empty()) {
                (Some(source), true) => partner.queue = source.path(),
                (Some(_), false) => anyhow::bail!(
                    "partners.{name}: set `queue` or `source`, not both (a source is read from its subscription)"
                ),
                (None, true) => anyhow::bail!(
                    "partners.{name}: say where it reads: `queue = \"NAME\"`, or \
                     `source = {{ topic = \"TOPIC\", subscription = \"NAME\" }}`"
                ),
                (None, false) => {}
            }
        }
        Ok(())
    }

    /// Refuses `[queues]` settings for a topic, and, on the embedded queue, a partner source
    /// whose topic or subscription is not under `[[topics]]` (the embedded queue can only serve
    /// what the config declares; on Service Bus the namespace has the entities).
    pub(super) fn check_topics(&self) -> anyhow::Result<()> {
        if let Some(topic) = self.topics.iter().find(|t| self.queues.contains_key(&t.name)) {
            anyhow::bail!(
                "`{}` is under [[topics]] and under [queues]: a name is a queue or a topic, not both",
                topic.name
            );
        }
        if !matches!(self.transport, TransportConfig::Embedded) {
            return Ok(());
        }
        for (name, partner) in &self.partners {
            let Some(source) = &partner.source else { continue };
            let declared = self
                .topic(&source.topic)
                .is_some_and(|topic| topic.subscriptions.iter().any(|s| s.name == source.subscription));
            anyhow::ensure!(
                declared,
                "partners.{name}.source: the embedded queue has no subscription `{}` on topic `{}`; add\n  \
                 [[topics]]\n  name = \"{}\"\n  [[topics.subscriptions]]\n  name = \"{}\"",
                source.subscription,
                source.topic,
                source.topic,
                source.subscription
            );
        }
        Ok(())
    }

    /// The topic named `name`, if the config declares it.
    pub fn topic(&self, name: &str) -> Option<&TopicSettings> {
        self.topics.iter().find(|topic| topic.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    const COMPONENT: &str = "component = \"p.wasm\"\n";

    #[test]
    fn a_source_becomes_the_subscription_path_and_its_own_compensation_queue() {
        let config = load(&format!(
            "[[topics]]\nname = \"contacts\"\n[[topics.subscriptions]]\nname = \"mdm\"\n\
             [partners.mdm]\n{COMPONENT}source = {{ topic = \"contacts\", subscription = \"mdm\" }}\n"
        ))
        .unwrap();
        let mdm = &config.partners["mdm"];
        assert_eq!(mdm.queue, "contacts/Subscriptions/mdm");
        assert_eq!(mdm.compensation_queue(), "contacts-mdm-compensate");
        let queues: Vec<String> = config.queue_settings().into_iter().map(|q| q.name).collect();
        assert_eq!(queues, ["contacts-mdm-compensate"], "subscriptions are not queues");
        assert_eq!(
            config.entities(),
            ["contacts-mdm-compensate", "contacts/Subscriptions/mdm"]
        );
    }

    #[test]
    fn a_partner_names_one_place_to_read_and_its_subscription_is_declared() {
        let both = load(&format!(
            "[partners.mdm]\n{COMPONENT}queue = \"q\"\nsource = {{ topic = \"t\", subscription = \"s\" }}\n"
        ))
        .unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let neither = load(&format!("[partners.mdm]\n{COMPONENT}")).unwrap_err();
        assert!(neither.contains("say where it reads"), "{neither}");
        let undeclared = load(&format!(
            "[partners.mdm]\n{COMPONENT}source = {{ topic = \"t\", subscription = \"s\" }}\n"
        ))
        .unwrap_err();
        assert!(
            undeclared.contains("[[topics]]") && undeclared.contains("name = \"s\""),
            "{undeclared}"
        );
        let clash = load(&format!(
            "[[topics]]\nname = \"t\"\n[queues.t]\nlock-duration-ms = 5000\n[partners.mdm]\n{COMPONENT}queue = \"q\"\n"
        ))
        .unwrap_err();
        assert!(clash.contains("a queue or a topic"), "{clash}");
    }
}
