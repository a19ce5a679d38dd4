//! `weft:shared/relay`: forwards each call to the imported counter, so that the
//! host can make many callers of one provider.

wit_bindgen::generate!({ path: "../../wit/shared", world: "caller" });

use exports::weft::shared::relay::Guest;
use weft::shared::counter::{self, Tally};

struct Relay;

impl Guest for Relay {
    async fn bump_through(wait_ms: u32) -> Tally {
        counter::bump(wait_ms).await
    }
}

export!(Relay);
