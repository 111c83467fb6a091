//! The notifier against real sinks: Prometheus Alertmanager (Debian's
//! package, started by the test) and a local HTTP receiver playing the
//! generic webhook, Slack and PagerDuty.

use std::time::Duration;

use prost::Message;
use rg_proto::v1::{
    Alert, AlertSource, AlertState, FailoverDecision, FailoverPhase, FaultKind, Severity,
};
use rg_testkit::{init_logging, Alertmanager, NatsServer, Receiver, Waited};
use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

fn start_notifier(config: rg_notifier::Config, nats: &rg_bus::NatsConfig) -> Running {
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(rg_notifier::run(config, nats.clone(), token.clone()));
    Running::new(token, task)
}

fn notifier_config(sinks: &str) -> rg_notifier::Config {
    toml::from_str(&format!("dashboard_url = \"http://dash.test/\"\n{sinks}"))
        .expect("notifier config")
}

fn alert(id: &str, source: AlertSource, severity: Severity, state: AlertState) -> Alert {
    Alert {
        id: id.into(),
        source: source as i32,
        severity: severity as i32,
        state: state as i32,
        region: "us-east-1".into(),
        service: "dynamodb".into(),
        summary: format!(
            "{id} is {}",
            if state == AlertState::Resolved {
                "over"
            } else {
                "on"
            }
        ),
        started_at_unix_ms: rg_bus::unix_now_ms() - 1000,
        ended_at_unix_ms: if state == AlertState::Resolved {
            rg_bus::unix_now_ms()
        } else {
            0
        },
        recommended_actions: vec!["fail over to us-west-2".into()],
        ..Default::default()
    }
}

/// NATS with the streams, a JetStream context, and a notifier.
struct Bus {
    server: NatsServer,
    nats: rg_bus::NatsConfig,
    js: async_nats::jetstream::Context,
}

impl Bus {
    async fn start() -> Self {
        init_logging();
        let server = NatsServer::start();
        let nats = nats_config(&server.url());
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        rg_bus::streams::provision(&js, &nats)
            .await
            .expect("streams");
        Self { server, nats, js }
    }

    async fn publish_alert(&self, a: &Alert) {
        let subject = format!(
            "rg.alerts.{}.{}",
            a.source()
                .as_str_name()
                .trim_start_matches("ALERT_SOURCE_")
                .to_lowercase(),
            rg_proto::domain::Severity::from_wire(a.severity())
                .expect("a severity")
                .as_str()
        );
        self.js
            .publish(subject, a.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn wait_for_consumer(&self, name: &str) {
        wait_for_consumer(&self.server.url(), "RG_ALERTS", name).await;
    }
}

async fn wait_taken(r: &Receiver, what: &str, n: usize) -> Vec<rg_testkit::Received> {
    rg_testkit::wait_until(what, WAIT, || async {
        let taken = r.taken();
        if taken.len() >= n {
            Waited::Done(taken)
        } else {
            Waited::NotYet(format!("{} of {n}: {taken:#?}", taken.len()))
        }
    })
    .await
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("a JSON body")
}

/// Active alerts in Alertmanager named `alertname`.
async fn active(am: &Alertmanager, alertname: &str) -> Vec<Value> {
    let r = rg_testkit::http::get(am.addr(), "/api/v2/alerts")
        .await
        .expect("alertmanager answers");
    assert_eq!(r.status, 200, "{}", r.body);
    json(&r.body)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_cascade_alert_reaches_alertmanager_and_resolves_after_recovery() {
    let am = Alertmanager::start();
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (simulator, probers) = start_regions(&nats, Duration::from_millis(500)).await;
    let cascade = start_cascade(cascade_config(), &nats);
    let notifier = start_notifier(
        notifier_config(&format!(
            "[[sinks]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\nresend_interval = \"1s\"\n",
            am.url()
        )),
        &nats,
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_rounds_decided(&server.url(), "cascade", 2).await; // healthy rounds first
    inject(&client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;

    let alerts = rg_testkit::wait_until("the cascade alert in Alertmanager", WAIT, || async {
        let alerts = active(&am, "RegionguardCascade").await;
        if alerts.iter().any(|a| a["labels"]["severity"] == "critical") {
            Waited::Done(alerts)
        } else {
            Waited::NotYet(format!("{alerts:#?}"))
        }
    })
    .await;
    let a = alerts
        .iter()
        .find(|a| a["labels"]["severity"] == "critical")
        .unwrap();
    let labels = &a["labels"];
    assert_eq!(
        (&labels["region"], &labels["source"]),
        (&Value::from("us-east-1"), &Value::from("cascade")),
        "{a:#}"
    );
    assert!(labels["alert_id"]
        .as_str()
        .unwrap()
        .starts_with("cascade:us-east-1:critical:"));
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("us-east-1"),
        "{a:#}"
    );
    assert!(
        !a["annotations"]["predicted_impact"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{a:#}"
    );
    assert!(
        !a["annotations"]["recommended_actions"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{a:#}"
    );
    assert_eq!(a["annotations"]["dashboard"], "http://dash.test/");
    assert_eq!(a["status"]["state"], "active");

    // Still there after its first hold (4 resend intervals) has passed:
    // it is kept firing by being sent again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        active(&am, "RegionguardCascade")
            .await
            .iter()
            .any(|a| a["labels"]["severity"] == "critical"),
        "the critical alert lapsed while firing"
    );

    clear_all(&client).await;
    rg_testkit::wait_until(
        "the cascade alert resolved in Alertmanager",
        WAIT,
        || async {
            let alerts = active(&am, "RegionguardCascade").await;
            if alerts.is_empty() {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{alerts:#?}"))
            }
        },
    )
    .await;

    notifier.stop().await;
    cascade.stop().await;
    for p in probers {
        p.stop().await;
    }
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_slack_and_pagerduty_get_their_payloads_and_pagerduty_one_dedup_key() {
    let bus = Bus::start().await;
    let r = Receiver::start().await;
    let notifier = start_notifier(
        notifier_config(&format!(
            r#"
[[sinks]]
name = "hook"
kind = "webhook"
url = "{url}/hook"
[[sinks]]
name = "team-slack"
kind = "slack"
url = "{url}/slack"
sources = ["cascade", "threshold"]
[[sinks]]
name = "pd"
kind = "pagerduty"
url = "{url}/pd"
routing_key = "0123456789abcdef0123456789abcdef"
min_severity = "critical"
"#,
            url = r.url()
        )),
        &bus.nats,
    );
    bus.wait_for_consumer("notifier").await;

    let crit = "cascade:us-east-1:critical:7";
    bus.publish_alert(&alert(
        crit,
        AlertSource::Cascade,
        Severity::Critical,
        AlertState::Firing,
    ))
    .await;
    bus.publish_alert(&alert(
        "thr:us-east-1:x:3",
        AlertSource::Threshold,
        Severity::Medium,
        AlertState::Firing,
    ))
    .await;
    bus.publish_alert(&alert(
        crit,
        AlertSource::Cascade,
        Severity::Critical,
        AlertState::Resolved,
    ))
    .await;
    let mut planned = FailoverDecision {
        id: "fo-9".into(),
        from_region: "us-east-1".into(),
        to_region: "us-west-2".into(),
        ..Default::default()
    };
    planned.set_phase(FailoverPhase::Planned);
    bus.js
        .publish(
            "rg.decisions.failover.planned",
            planned.encode_to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // webhook: all four, in order; slack: the alerts (no failover source);
    // PagerDuty: the critical one's trigger and resolve.
    wait_taken(&r, "every payload", 4 + 3 + 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // and nothing more
    let taken = r.taken();
    let on = |path: &str| -> Vec<Value> {
        taken
            .iter()
            .filter(|t| t.path == path)
            .map(|t| json(&t.body))
            .collect()
    };
    let hook = on("/hook");
    let summary: Vec<_> = hook
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap(),
                h["status"].as_str().unwrap(),
                h["severity"].as_str().unwrap(),
            )
        })
        .collect();
    // In stream order per stream: alerts and failover phases come from two
    // streams (two consumers), so the failover notice may come anywhere
    // among the alerts.
    let (failovers, alerts): (Vec<_>, Vec<_>) = summary
        .iter()
        .copied()
        .partition(|(id, _, _)| id.starts_with("failover:"));
    assert_eq!(
        alerts,
        [
            (crit, "firing", "critical"),
            ("thr:us-east-1:x:3", "firing", "medium"),
            (crit, "resolved", "critical"),
        ]
    );
    assert_eq!(failovers, [("failover:fo-9", "firing", "high")]);
    let first_alert = hook
        .iter()
        .find(|h| h["id"] == crit)
        .expect("the critical alert's notice");
    assert_eq!(
        first_alert["event"]["recommended_actions"][0],
        "fail over to us-west-2"
    );
    let planned_notice = hook
        .iter()
        .find(|h| h["id"] == "failover:fo-9")
        .expect("the failover notice");
    assert_eq!(planned_notice["event"]["phase"], "planned");
    assert_eq!(first_alert["dashboard"], "http://dash.test/");

    let slack = on("/slack");
    assert_eq!(slack.len(), 3, "{slack:#?}");
    let text = slack[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("CRITICAL [cascade] {crit} is on")),
        "{text}"
    );
    assert!(
        text.contains("Do: fail over to us-west-2")
            && text.contains("<http://dash.test/|Dashboard>"),
        "{text}"
    );
    assert!(slack[2]["text"]
        .as_str()
        .unwrap()
        .starts_with("RESOLVED [cascade]"));

    let pd = on("/pd");
    assert_eq!(pd.len(), 2, "only the critical alert: {pd:#?}");
    assert_eq!(
        (
            pd[0]["event_action"].as_str(),
            pd[1]["event_action"].as_str()
        ),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(pd[0]["dedup_key"], crit);
    assert_eq!(pd[1]["dedup_key"], crit);
    assert_eq!(pd[0]["routing_key"], "0123456789abcdef0123456789abcdef");
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    assert_eq!(pd[0]["payload"]["source"], "regionguard/us-east-1");
    notifier.stop().await;
    drop(bus.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_a_while_gets_every_alert_once_when_it_is_back() {
    let bus = Bus::start().await;
    let r = Receiver::start().await;
    r.answer(503);
    let notifier = start_notifier(
        notifier_config(&format!(
            "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nbackoff = \"100ms\"\nmax_backoff = \"500ms\"\n",
            r.url()
        )),
        &bus.nats,
    );
    bus.wait_for_consumer("notifier").await;
    let ids: Vec<String> = (0..5).map(|i| format!("thr:us-east-1:e{i}:1")).collect();
    for id in &ids {
        bus.publish_alert(&alert(
            id,
            AlertSource::Threshold,
            Severity::High,
            AlertState::Firing,
        ))
        .await;
    }
    // Down: it keeps trying; nothing is taken, nothing acked.
    rg_testkit::wait_until("retries against the down sink", WAIT, || async {
        if r.refused() >= 5 {
            Waited::Done(())
        } else {
            Waited::NotYet(format!("{} refused", r.refused()))
        }
    })
    .await;
    assert!(r.taken().is_empty());
    let info = bus
        .js
        .get_stream("RG_ALERTS")
        .await
        .unwrap()
        .consumer_info("notifier")
        .await
        .unwrap()
        .clone();
    assert_eq!(
        info.num_ack_pending, 5,
        "held unacked while the sink is down"
    );

    r.answer(200);
    wait_taken(&r, "every alert after the sink is back", 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // and nothing more
    let taken = r.taken();
    let got: Vec<String> = taken
        .iter()
        .map(|t| json(&t.body)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids, "each once, in order");
    rg_testkit::wait_until("every message acked", WAIT, || async {
        let s = bus.js.get_stream("RG_ALERTS").await.unwrap();
        let info = s.consumer_info("notifier").await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            Waited::Done(())
        } else {
            Waited::NotYet(format!("{} pending ack", info.num_ack_pending))
        }
    })
    .await;
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_never_takes_an_alert_gives_up_and_says_so_on_notify_failed() {
    let bus = Bus::start().await;
    let r = Receiver::start().await;
    r.answer(500);
    let mut failed = AlertFeed::subscribe(&bus.server.url(), "rg.alerts.notify.failed").await;
    let notifier = start_notifier(
        notifier_config(&format!(
            "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\ngive_up_after = \"1s\"\n",
            r.url()
        )),
        &bus.nats,
    );
    bus.wait_for_consumer("notifier").await;
    bus.publish_alert(&alert(
        "thr:us-east-1:lost:1",
        AlertSource::Threshold,
        Severity::Critical,
        AlertState::Firing,
    ))
    .await;
    let (_, notice) = failed
        .wait_for("the failure notice", WAIT, |_, a: &Alert| {
            a.source() == AlertSource::Notifier
        })
        .await;
    assert!(
        notice
            .summary
            .starts_with("sink hook (webhook) did not take thr:us-east-1:lost:1 after ")
            && notice.summary.contains("HTTP 500"),
        "{}",
        notice.summary
    );
    assert_eq!(notice.severity(), Severity::Critical);
    assert!(
        notice.recommended_actions[1].contains("RG_ALERTS#"),
        "{:?}",
        notice.recommended_actions
    );
    // Given up is done: the alert is acked, and the notice is not sent on.
    failed.drain_for(Duration::from_secs(2)).await;
    assert_eq!(failed.seen.len(), 1, "{:#?}", failed.seen);
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_notifier_sends_nothing_it_already_delivered() {
    let bus = Bus::start().await;
    let r = Receiver::start().await;
    let config = notifier_config(&format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
        r.url()
    ));
    let first = start_notifier(config.clone(), &bus.nats);
    bus.wait_for_consumer("notifier").await;
    for i in 0..3 {
        bus.publish_alert(&alert(
            &format!("thr:us-east-1:r{i}:1"),
            AlertSource::Threshold,
            Severity::High,
            AlertState::Firing,
        ))
        .await;
    }
    wait_taken(&r, "three alerts", 3).await;
    first.stop().await;
    // The worst case: the consumer's position is lost too (deleted), so
    // the next start reads the last five minutes again.
    bus.js
        .get_stream("RG_ALERTS")
        .await
        .unwrap()
        .delete_consumer("notifier")
        .await
        .unwrap();
    let second = start_notifier(config, &bus.nats);
    bus.wait_for_consumer("notifier").await;
    bus.publish_alert(&alert(
        "thr:us-east-1:r3:1",
        AlertSource::Threshold,
        Severity::High,
        AlertState::Firing,
    ))
    .await;
    wait_taken(&r, "the new alert", 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = r
        .taken()
        .iter()
        .map(|t| json(&t.body)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "thr:us-east-1:r0:1",
            "thr:us-east-1:r1:1",
            "thr:us-east-1:r2:1",
            "thr:us-east-1:r3:1"
        ]
    );
    second.stop().await;
}
