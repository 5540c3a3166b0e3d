//! Per-record ordering: the ERP partner reads its queue with `ordering = "per-record"` on two
//! competing hosts while its server fails at random, and every record's messages still reach it
//! in the order they were sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost::saga::Verdict;
use sagahost::service::Host;
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::partners::Partner;
use crate::saga::{Kind, Running, config_for, contacts, start};

/// Records, and messages per record: 2,000 messages in all.
const RECORDS: usize = 50;
const PER_RECORD: usize = 40;
/// One request in this many is answered 503 (a transient fault the component retries).
const FAULT_ONE_IN: u64 = 5;

/// Pseudo-random and repeatable: whether the `index`th request fails.
fn faulty(index: usize) -> bool {
    let mut x = (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9).is_multiple_of(FAULT_ONE_IN)
}

/// `(record, n)` from an ERP request: the test sends message `n` of a record with
/// `mdm-id = "<record>/<n>"`, which the component posts as `mdmId`.
fn record_and_number(body: &str) -> (String, usize) {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let mdm_id = json["mdmId"].as_str().expect("mdmId in every ERP request");
    let (record, n) = mdm_id.split_once('/').unwrap();
    (record.to_owned(), n.parse().unwrap())
}

async fn each_records_messages_reach_the_partner_in_order_across_two_hosts_with_faults(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let erp = Partner::start(|_, index| {
        if faulty(index) {
            (503, Vec::new(), "busy".into())
        } else {
            (201, Vec::new(), String::new())
        }
    })
    .await;
    let unused = Partner::always(500, "").await.origin();
    let mut table = config_for(dir.path(), [unused.clone(), unused, erp.origin()]);
    let partner = table["partners"]["erp"].as_table().unwrap().clone();
    let mut ordered = partner;
    ordered.insert("ordering".into(), "per-record".into());
    ordered.insert("concurrency".into(), 4.into());
    ordered.insert(
        "retry".into(),
        toml::from_str::<toml::Table>("initial-delay-ms = 10\nmax-delay-ms = 100\nmax-attempts = 30\njitter = 0.2")
            .unwrap()
            .into(),
    );
    table["partners"]
        .as_table_mut()
        .unwrap()
        .insert("erp".into(), ordered.into());

    let Running { host, store, events } = start(dir.path(), table, kind).await;
    let config = Config::load(&dir.path().join("sagahost.toml")).unwrap().config;
    let rival = Host::start(&config).await.unwrap();
    let rival_events = rival.subscribe();

    // Message n of every record before message n + 1 of any: each record's are in sequence order.
    let bodies = contacts(RECORDS);
    let mut outputs = Vec::new();
    for n in 0..PER_RECORD {
        for (record, body) in bodies.iter().enumerate() {
            outputs.push(Output {
                queue: "erp".into(),
                message: OutgoingMessage {
                    content_type: Some("application/json".into()),
                    properties: vec![("mdm-id".into(), format!("{record}/{n}"))],
                    session_id: Some(format!("11111111-0000-4000-8000-{record:012}")),
                    body: body.clone(),
                    ..Default::default()
                },
            });
        }
    }
    for batch in outputs.chunks(200) {
        store.send(batch.to_vec()).await.unwrap();
    }

    let total = RECORDS * PER_RECORD;
    let deadline = Instant::now() + Duration::from_secs(180);
    let succeeded = |erp: &Partner| erp.received().iter().enumerate().filter(|(i, _)| !faulty(*i)).count();
    while succeeded(&erp) < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} messages reached the ERP within 180 s",
            succeeded(&erp)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the last settles a moment, then check that nothing is left anywhere.
    let depth = loop {
        let depth = store.queue_depth("erp").await.unwrap();
        if depth.active == 0 || Instant::now() > deadline {
            break depth;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    host.shutdown().await;
    rival.shutdown().await;

    let mut by_record: BTreeMap<String, Vec<(usize, bool)>> = BTreeMap::new();
    for (index, request) in erp.received().iter().enumerate() {
        let (record, n) = record_and_number(&request.body);
        by_record.entry(record).or_default().push((n, !faulty(index)));
    }
    assert_eq!(by_record.len(), RECORDS);
    for (record, calls) in &by_record {
        let numbers: Vec<usize> = calls.iter().map(|(n, _)| *n).collect();
        assert!(
            numbers.windows(2).all(|pair| pair[0] <= pair[1]),
            "record {record}: a later message reached the ERP before an earlier one was done: {numbers:?}"
        );
        let done: Vec<usize> = calls.iter().filter(|(_, ok)| *ok).map(|(n, _)| *n).collect();
        assert_eq!(
            done,
            (0..PER_RECORD).collect::<Vec<_>>(),
            "record {record}: each message succeeds once, in order"
        );
    }
    let faults = erp.received().len() - total;
    assert!(faults > total / 10, "only {faults} faults were injected");
    assert_eq!(
        depth.active + depth.scheduled + depth.dead_lettered,
        0,
        "{depth:?} left on `erp`"
    );

    // Both hosts took records, and every retry waited in place (nothing went back on the queue).
    for (name, mut events) in [("first", events), ("rival", rival_events)] {
        let mut completed = 0;
        while let Ok(event) = events.try_recv() {
            assert!(
                matches!(event.verdict, Verdict::Completed | Verdict::Retried { .. }),
                "{event:?}"
            );
            completed += usize::from(event.verdict == Verdict::Completed);
        }
        assert!(
            completed > 0,
            "the {name} host completed nothing: the hosts did not compete"
        );
    }
}

on_both_transports!(each_records_messages_reach_the_partner_in_order_across_two_hosts_with_faults);
