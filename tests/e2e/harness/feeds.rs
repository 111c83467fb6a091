//! What the tests read: health events through a durable consumer, any
//! subject through a core subscription, a stream read back whole.

use super::*;

/// Health events as decoded by a durable JetStream consumer of the
/// health stream (so what arrives here was stored in RG_HEALTH).
pub(crate) struct HealthFeed {
    rx: mpsc::UnboundedReceiver<HealthEvent>,
    _task: JoinHandle<()>,
}

impl HealthFeed {
    /// Opens a durable consumer on `<p>.health.>` (waits for the streams).
    pub(crate) async fn open(nats: &NatsConfig, durable: &str) -> Self {
        let token = CancellationToken::new();
        let bus = rg_bus::Bus::connect(nats, "e2e-feed", &token)
            .await
            .expect("bus");
        let spec = rg_bus::consume::ConsumerSpec::new(
            bus.subjects.stream(rg_bus::Stream::Health),
            durable,
            bus.subjects.health_all(),
        );
        let consumer = rg_bus::consume::durable(&bus.js, &spec)
            .await
            .expect("durable consumer");
        let (tx, rx) = mpsc::unbounded_channel();
        let dead = bus.dead_letter(durable);
        let task = tokio::spawn(async move {
            let _ignored =
                rg_bus::consume::run::<HealthEvent, _, _>(consumer, dead, token, |event, _| {
                    let _ignored = tx.send(event);
                    std::future::ready(rg_bus::consume::Outcome::Handled)
                })
                .await;
        });
        Self { rx, _task: task }
    }

    /// Waits for the first event matching `pred`; panics after `deadline`
    /// with the last event seen.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&HealthEvent) -> bool,
    ) -> HealthEvent {
        let mut last: Option<HealthEvent> = None;
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let next = tokio::time::timeout_at(end, self.rx.recv()).await;
            match next {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(e)) => last = Some(e),
                Ok(None) => panic!("health feed closed while waiting for {what}"),
                Err(_) => {
                    panic!("no event for {what} within {deadline:?}; last event seen: {last:?}")
                }
            }
        }
    }

    /// The next event, or `None` when none arrives within `quiet`.
    pub(crate) async fn next_within(&mut self, quiet: Duration) -> Option<HealthEvent> {
        tokio::time::timeout(quiet, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Messages as published on a subject (a core subscription), decoded, each
/// with the subject it came on.
pub(crate) struct Feed<M> {
    sub: async_nats::Subscriber,
    pub(crate) seen: Vec<(String, M)>,
}

/// Alerts, from `rg.alerts.>`.
pub(crate) type AlertFeed = Feed<rg_proto::v1::Alert>;

impl AlertFeed {
    /// Subscribes to `rg.alerts.>` (before the alerts are expected).
    pub(crate) async fn open(url: &str) -> Self {
        Self::subscribe(url, "rg.alerts.>").await
    }

    /// As [`AlertFeed::open`], as a NATS user.
    pub(crate) async fn open_as(url: &str, user: &str, password: &str) -> Self {
        Self::subscribe_as(url, "rg.alerts.>", user, password).await
    }
}

impl<M: Message + Default + Clone + std::fmt::Debug> Feed<M> {
    /// Subscribes to `subject`.
    pub(crate) async fn subscribe(url: &str, subject: &str) -> Self {
        let client = async_nats::connect(server_addrs(url))
            .await
            .expect("connect");
        Self::on(client, subject).await
    }

    /// Subscribes to `subject` as a NATS user.
    pub(crate) async fn subscribe_as(url: &str, subject: &str, user: &str, password: &str) -> Self {
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .connect(url)
                .await
                .expect("connect");
        Self::on(client, subject).await
    }

    async fn on(client: async_nats::Client, subject: &str) -> Self {
        let sub = client
            .subscribe(subject.to_owned())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        Self {
            sub,
            seen: Vec::new(),
        }
    }

    /// Waits for the first message matching `pred` (keeping every message
    /// seen).
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        pred: impl FnMut(&str, &M) -> bool,
    ) -> (String, M) {
        match self.try_wait_for(what, deadline, pred).await {
            Some(hit) => hit,
            None => panic!(
                "nothing for {what} within {deadline:?}; seen: {:#?}",
                self.seen
            ),
        }
    }

    /// [`Self::wait_for`], or `None` after `deadline`.
    pub(crate) async fn try_wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&str, &M) -> bool,
    ) -> Option<(String, M)> {
        if let Some(hit) = self.seen.iter().find(|(s, m)| pred(s, m)) {
            return Some(hit.clone());
        }
        let end = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(end, futures::StreamExt::next(&mut self.sub)).await {
                Ok(Some(m)) => {
                    let message = M::decode(m.payload.as_ref()).expect("message decodes");
                    let subject = m.subject.to_string();
                    self.seen.push((subject.clone(), message.clone()));
                    if pred(&subject, &message) {
                        return Some((subject, message));
                    }
                }
                Ok(None) => panic!("subscription closed while waiting for {what}"),
                Err(_) => return None,
            }
        }
    }

    /// Collects whatever arrives within `quiet`.
    pub(crate) async fn drain_for(&mut self, quiet: Duration) {
        let end = tokio::time::Instant::now() + quiet;
        while let Ok(Some(m)) =
            tokio::time::timeout_at(end, futures::StreamExt::next(&mut self.sub)).await
        {
            if let Ok(message) = M::decode(m.payload.as_ref()) {
                self.seen.push((m.subject.to_string(), message));
            }
        }
    }
}

/// Every message of `stream` (matching `filter`) stored since `since`,
/// decoded, with its subject, read with an ordered consumer.
pub(crate) async fn read_stream<M>(
    url: &str,
    stream: rg_bus::Stream,
    filter: &str,
    since: std::time::SystemTime,
) -> Vec<(String, M)>
where
    M: Message + Default + Send + 'static,
{
    let client = async_nats::connect(server_addrs(url))
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let subjects = rg_bus::Subjects::new("rg");
    let stop = CancellationToken::new();
    let mut rx = rg_bus::tail::spawn::<M>(
        js,
        subjects.stream(stream),
        filter.to_owned(),
        rg_bus::tail::From::Time(since),
        "e2e",
        stop.clone(),
    );
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(rg_bus::tail::Event::Message(m))) if m.history => {
                out.push((m.subject, m.message))
            }
            Ok(Some(rg_bus::tail::Event::Message(_))) => {}
            Ok(Some(rg_bus::tail::Event::CaughtUp)) => break,
            Ok(None) => panic!("the tail of {filter} ended"),
            Err(_) => panic!("reading {filter} back took over 30 s"),
        }
    }
    stop.cancel();
    out
}
