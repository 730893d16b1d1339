//! Bounded history of recent changes, and fan-out of new ones to watches, for stores that keep
//! their objects in this process.

use std::collections::VecDeque;

use tokio::sync::{broadcast, mpsc};

use super::{StoreError, WatchEvent, WatchReceiver, WATCH_BUFFER};

/// The last `limit` changes, plus a channel that carries each new one to the watches.
///
/// The owner calls [`EventHistory::push`] and [`EventHistory::subscribe`] under the same lock
/// as its writes, so a watch receives every change after its start revision exactly once.
pub(crate) struct EventHistory {
    events: VecDeque<WatchEvent>,
    /// Changes with a revision greater than this are all in `events` or still to come.
    oldest: u64,
    limit: usize,
    sender: broadcast::Sender<WatchEvent>,
}

impl EventHistory {
    /// Creates an empty history that starts after revision `current`.
    pub(crate) fn new(current: u64, limit: usize) -> Self {
        let (sender, _) = broadcast::channel(WATCH_BUFFER);
        EventHistory {
            events: VecDeque::new(),
            oldest: current,
            limit: limit.max(1),
            sender,
        }
    }

    /// Records a change and sends it to the running watches.
    pub(crate) fn push(&mut self, event: WatchEvent) {
        if self.events.len() == self.limit {
            if let Some(dropped) = self.events.pop_front() {
                self.oldest = dropped.revision();
            }
        }
        self.events.push_back(event.clone());
        // An error only means that no watch is running.
        let _ = self.sender.send(event);
    }

    /// Returns the retained changes after `after` and a receiver of the changes to come.
    pub(crate) fn subscribe(
        &self,
        after: u64,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), StoreError> {
        if after < self.oldest {
            return Err(StoreError::Expired { requested: after });
        }
        let past = self
            .events
            .iter()
            .filter(|event| event.revision() > after)
            .cloned()
            .collect();
        Ok((past, self.sender.subscribe()))
    }
}

/// Starts a task that sends `past`, then every change from `live` after revision `after`, to
/// the returned receiver.
///
/// The task ends when the receiver is dropped or the history is dropped. A watch that falls
/// more than the broadcast buffer behind gets [`StoreError::Expired`] as its last item, as a
/// Kubernetes API server ends a watch that cannot keep up. The client then lists and watches
/// again.
pub(crate) fn forward(
    after: u64,
    past: Vec<WatchEvent>,
    mut live: broadcast::Receiver<WatchEvent>,
) -> WatchReceiver {
    let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut last = after;
        for event in past {
            last = event.revision();
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }

        loop {
            let received = tokio::select! {
                () = sender.closed() => return,
                received = live.recv() => received,
            };
            match received {
                // Changes already sent from the history arrive again from the channel.
                Ok(event) if event.revision() <= last => {}
                Ok(event) => {
                    last = event.revision();
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let expired = StoreError::Expired { requested: last };
                    let _ = sender.send(Err(expired)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    receiver
}
