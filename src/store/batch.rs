//! `Batch`: several writes in one transaction.

use uuid::Uuid;

use super::kernel::Record;
use super::kernel::Tx;
use super::{Error, Store};
use crate::engine::access::Principal;
use crate::engine::{Engine, Entity, Input};

/// Several writes in one transaction: all of them, or none (`POST /api/batch`). Each
/// operation runs in a savepoint and is checked exactly as if it were sent alone.
/// Dropping a batch without [`Batch::commit`] rolls everything back.
pub struct Batch<'s> {
    store: &'s Store,
    tx: Tx,
    /// A transition of the batch queued webhook deliveries.
    queued: bool,
}

impl Store {
    pub async fn begin_batch(&self) -> Result<Batch<'_>, Error> {
        let tx = Tx::begin(&self.pool).await?;
        Ok(Batch {
            store: self,
            tx,
            queued: false,
        })
    }
}

impl Batch<'_> {
    pub async fn create(
        &mut self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.store
            .create_in(Some(&mut self.tx), engine, e, input, who)
            .await
    }

    pub async fn update(
        &mut self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.store
            .update_in(Some(&mut self.tx), engine, e, id, input, if_match, who)
            .await
    }

    pub async fn delete(
        &mut self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<(), Error> {
        self.store
            .delete_in(Some(&mut self.tx), engine, e, id, if_match, who)
            .await
    }

    pub async fn transition(
        &mut self,
        engine: &Engine,
        req: &crate::engine::transition::Request<'_>,
        if_match: Option<i64>,
    ) -> Result<super::Fired, Error> {
        let fired = self
            .store
            .transition_in(Some(&mut self.tx), engine, req, if_match)
            .await?;
        self.queued |= fired.is_ok() && !req.transition.effects.is_empty();
        Ok(fired)
    }

    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await?;
        if self.queued {
            self.store.wake_outbox();
        }
        Ok(())
    }
}
