//! `GET /api/{plural}/events`: the change feed as server-sent events. Each subscriber
//! gets the changes it may list (its `list` rule and its own `filter`), with only the
//! fields it may read, evaluated when the event is delivered.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};

use super::extract::Target;
use super::limits::{ClientAddr, StreamSlot};
use super::{AppState, Problem, param_problem, problem, query_pairs};
use crate::engine::access::{Action, Principal};
use crate::engine::cond::check::Typed;
use crate::engine::query::{self, ParamError};
use crate::engine::{Engine, Entity};
use crate::runtime::feed::Outcome;
use crate::store::{self, Change, ChangeKind};

/// Events waiting to be written to one client.
const QUEUE: usize = 64;
/// Changes a subscriber evaluates at once.
const BATCH: usize = 16;

/// When the process drains, each stream ends with a `shutdown` event whose
/// `retry:` asks the client to reconnect (to another instance) after this many
/// milliseconds, plus up to [`RETRY_JITTER_MS`] so that they do not all come back
/// at once.
pub const SHUTDOWN_RETRY_MS: u64 = 1000;
pub const RETRY_JITTER_MS: u64 = 2000;

pub(super) async fn events(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    RawQuery(raw): RawQuery,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut filter = None;
    for (k, v) in query_pairs(raw.as_deref())? {
        if k != "filter" || filter.is_some() {
            return Err(param_problem(ParamError {
                param: k.clone(),
                message: if k == "filter" {
                    "`filter` is given twice".into()
                } else {
                    format!("`{k}` is not a parameter of the event feed; it takes `filter`")
                },
                hint: None,
                column: None,
            }));
        }
        let hidden = engine.access.hidden_everywhere(&who);
        filter = Some(query::filter(&engine, &e, &v, &hidden, &who).map_err(param_problem)?);
    }
    store::permitted(&engine, &e, &Action::List, &who)
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    if state.shutdown.is_draining() {
        let mut p = Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "Shutting down",
            "this instance is stopping; open the stream again (another instance will take it)",
        );
        p.retry_after(1);
        return Err(p);
    }
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    Problem::bad_request("`Last-Event-ID` must be the id of an earlier event")
                })?,
        ),
    };
    // A place among the open streams (per caller, per address, in total), held
    // until the subscription ends.
    let addr = addr.map(|Extension(a)| a).unwrap_or(ClientAddr(None));
    let slot = state.limits.open_stream(who.id.as_deref(), addr)?;
    let live = state
        .feed
        .subscribe()
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    let (out, queue) = mpsc::channel(QUEUE);
    let sub = Subscriber {
        state,
        entity: e.name.clone(),
        filter,
        who,
        out,
        _slot: slot,
        key: Mutex::new(None),
    };
    // The subscriber's lines carry the request's span (its request id).
    tokio::spawn(tracing::Instrument::in_current_span(sub.run(last_id, live)));
    let stream = futures_util::stream::unfold(queue, |mut q| async move {
        q.recv().await.map(|ev| (Ok::<Event, Infallible>(ev), q))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct Subscriber {
    state: AppState,
    entity: String,
    filter: Option<Typed>,
    who: Arc<Principal>,
    out: mpsc::Sender<Event>,
    _slot: StreamSlot,
    /// The view key (`Store::feed_key`) and the engine it was computed with.
    key: Mutex<Option<(Arc<Engine>, Arc<str>)>>,
}

/// Why a subscription ends.
enum End {
    /// The client went away.
    Gone,
    /// Told to the client in a last event.
    Told(&'static str, Value),
}

impl Subscriber {
    async fn run(self, last_id: Option<i64>, mut live: broadcast::Receiver<Arc<Change>>) {
        let shutdown = self.state.shutdown.clone();
        let end = tokio::select! {
            end = self.serve(last_id, &mut live) => end,
            () = self.out.closed() => End::Gone,
            () = shutdown.draining() => End::Told(
                "shutdown",
                json!({ "reason": "this instance is stopping; reconnect with Last-Event-ID to continue" }),
            ),
        };
        if let End::Told(name, data) = end {
            let mut ev = Event::default().event(name).data(data.to_string());
            if name == "shutdown" {
                ev = ev.retry(std::time::Duration::from_millis(shutdown_retry_ms()));
            }
            // A client that stopped reading has a full queue: do not wait for it
            // long (a drain would wait for this stream until its deadline).
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.out.send(ev)).await;
        }
    }

    async fn serve(
        &self,
        last_id: Option<i64>,
        live: &mut broadcast::Receiver<Arc<Change>>,
    ) -> End {
        let mut seen = 0;
        if let Some(last) = last_id {
            match self.replay(last).await {
                Ok(Some(upto)) => seen = upto,
                Ok(None) => return End::Gone,
                Err(end) => return end,
            }
        }
        let mut batch: Vec<Arc<Change>> = Vec::new();
        loop {
            // What has arrived since the last round, evaluated together.
            let mut next = Some(live.recv().await);
            while let Some(got) = next.take() {
                match got {
                    Ok(c) => {
                        if c.entity == self.entity && c.seq > seen {
                            batch.push(c);
                        }
                        if batch.len() < BATCH {
                            next = match live.try_recv() {
                                Ok(c) => Some(Ok(c)),
                                Err(TryRecvError::Empty) => None,
                                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                            };
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        return End::Told(
                            "dropped",
                            json!({
                                "reason": format!("this client fell {missed} changes behind; reconnect with Last-Event-ID to catch up"),
                            }),
                        );
                    }
                    Err(RecvError::Closed) => return End::Gone,
                }
            }
            let changes: Vec<&Change> = batch.iter().map(|c| &**c).collect();
            if let Err(end) = self.deliver_all(&changes, true).await {
                return end;
            }
            batch.clear();
        }
    }

    /// Sends what the log holds after `last`; the last sequence number read.
    async fn replay(&self, last: i64) -> Result<Option<i64>, End> {
        let store = &self.state.store;
        let pruned = store.pruned_through().await.map_err(db_end)?;
        if last < pruned {
            let ev = Event::default().event("reset").data(
                json!({
                    "reason": format!("events up to {pruned} are no longer kept; reload the list, then follow the events from here"),
                })
                .to_string(),
            );
            if self.out.send(ev).await.is_err() {
                return Ok(None);
            }
        }
        let mut cursor = last.max(pruned);
        loop {
            let page = store
                .changes_after(cursor, Some(&self.entity), crate::runtime::feed::PAGE)
                .await
                .map_err(db_end)?;
            let full = page.len() as i64 == crate::runtime::feed::PAGE;
            // Replayed events carry the records as they are now: not the events
            // evaluated for the live subscribers of the same view a while ago.
            self.deliver_all(&page.iter().collect::<Vec<_>>(), false)
                .await?;
            if let Some(c) = page.last() {
                cursor = c.seq;
            }
            if !full {
                return Ok(Some(cursor));
            }
        }
    }

    /// Sends the changes this subscriber may see, as it may see them, in order. They
    /// are evaluated at once (a view's evaluations of successive changes do not wait
    /// for one another), [`BATCH`] at a time; live ones `shared` with the other
    /// subscribers of the view.
    async fn deliver_all(&self, changes: &[&Change], shared: bool) -> Result<(), End> {
        for chunk in changes.chunks(BATCH) {
            let outcomes =
                futures_util::future::join_all(chunk.iter().map(|c| self.outcome(c, shared))).await;
            for (c, outcome) in chunk.iter().zip(outcomes) {
                let Some((name, data)) = outcome? else {
                    continue;
                };
                let ev = Event::default()
                    .id(c.seq.to_string())
                    .event(name)
                    .data(&*data);
                self.out.send(ev).await.map_err(|_| End::Gone)?;
            }
        }
        Ok(())
    }

    /// The event the change is for this subscriber, if any. Every subscriber with the
    /// same view (`Store::feed_key`: the same rules and filter as SQL, the same hidden
    /// fields) gets the same event, evaluated once for all of them.
    async fn outcome(&self, c: &Change, shared: bool) -> Result<Outcome, End> {
        let engine = self.state.engine.load_full();
        let Some(e) = engine.entity(&c.entity).cloned() else {
            return Err(End::Told(
                "reset",
                json!({ "reason": format!("the entity `{}` is no longer defined", c.entity) }),
            ));
        };
        if !shared {
            return self.evaluate(&engine, &e, c).await.map_err(db_end);
        }
        let key = self.key(&engine, &e);
        self.state
            .feed
            // Boxed: only the subscriber that evaluates pays for the query's future,
            // the others wait with a small one.
            .shared(c.seq, &engine, &key, || {
                Box::pin(self.evaluate(&engine, &e, c))
            })
            .await
            .map_err(db_end)
    }

    /// This subscriber's view key, computed again only when the definitions change.
    fn key(&self, engine: &Arc<Engine>, e: &Entity) -> Arc<str> {
        let mut memo = self.key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((of, key)) = &*memo
            && Arc::ptr_eq(of, engine)
        {
            return key.clone();
        }
        let key: Arc<str> = self
            .state
            .store
            .feed_key(engine, e, self.filter.as_ref(), &self.who)
            .into();
        *memo = Some((engine.clone(), key.clone()));
        key
    }

    /// What the change is for this subscriber's view: the event, or nothing.
    async fn evaluate(
        &self,
        engine: &Engine,
        e: &Entity,
        c: &Change,
    ) -> Result<Outcome, store::Error> {
        let store = &self.state.store;
        let filter = self.filter.as_ref();
        let was_visible = match &c.before {
            Some(before) => {
                store
                    .feed_was_visible(engine, e, before, filter, &self.who)
                    .await?
            }
            None => false,
        };
        let at = chrono::DateTime::from_timestamp_millis(c.at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let id = c.record_id.hyphenated().to_string();
        let (name, data) = match c.kind {
            ChangeKind::Deleted if was_visible => ("deleted", json!({ "id": id, "at": at })),
            ChangeKind::Deleted => return Ok(None),
            ChangeKind::Created | ChangeKind::Updated | ChangeKind::Transitioned => {
                match store
                    .feed_view(engine, e, c.record_id, filter, &self.who)
                    .await?
                {
                    Some(rec) => {
                        let mut data = json!({ "id": id, "at": at, "record": rec });
                        // A transition also says which state the record left.
                        if let (ChangeKind::Transitioned, Some(wf)) =
                            (c.kind, engine.workflow(&e.name))
                            && let Some(from) = c.before_text(&wf.field)
                            && rec.contains_key(&wf.field)
                        {
                            data["from"] = from.into();
                        }
                        (c.kind.as_str(), data)
                    }
                    // Gone from this caller's view (or from the database).
                    None if was_visible => ("removed", json!({ "id": id, "at": at })),
                    None => return Ok(None),
                }
            }
        };
        Ok(Some((name, data.to_string().into())))
    }
}

/// [`SHUTDOWN_RETRY_MS`] plus a random share of [`RETRY_JITTER_MS`].
fn shutdown_retry_ms() -> u64 {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    SHUTDOWN_RETRY_MS + random % (RETRY_JITTER_MS + 1)
}

fn db_end(err: store::Error) -> End {
    tracing::warn!(%err, "change feed");
    End::Told(
        "error",
        json!({ "reason": "the change log cannot be read right now; reconnect with Last-Event-ID" }),
    )
}
