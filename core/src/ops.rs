//! The core's part of the operations endpoints (`socketgram_common::ops`): it is ready when
//! its database answers and, with `[core.cluster]`, its NATS connection is up; each scrape
//! samples the database pool.

use std::sync::Arc;

use socketgram_common::ops::{NotReady, Ops};

use crate::Core;

/// Adds the core's readiness checks (`database`, and `nats` when configured) and samplers to
/// `ops`.
pub fn register(ops: Ops, core: &Arc<Core>) -> Ops {
    let store = core.store().clone();
    let ops = ops
        .ready("database", move || {
            let store = store.clone();
            // The cheapest read there is (the primary key's last entry), but a real one: it
            // needs a connection from the pool and an answer from the server.
            async move {
                store
                    .last_message_id()
                    .await
                    .map(drop)
                    .map_err(NotReady::because)
            }
        })
        .sample({
            let store = core.store().clone();
            move || {
                let pool = store.pool_stats();
                metrics::gauge!("socketgram_db_pool_connections").set(f64::from(pool.size));
                metrics::gauge!("socketgram_db_pool_idle_connections").set(pool.idle as f64);
            }
        });
    if core.bus_connected().is_none() {
        return ops;
    }
    let core = core.clone();
    ops.ready("nats", move || {
        let connected = core.bus_connected();
        async move {
            match connected {
                Some(false) => Err(NotReady::because("not connected to the NATS server")),
                _ => Ok(()),
            }
        }
    })
}
