//! Buckets in Redis: one hash per bucket (`weft:kv:<bucket>`), increments with
//! `HINCRBY` (behind a check that the field holds a counter), a batch in one
//! command (`HMGET`, `HSET`, `HDEL` with many fields). Reads ask `HSTRLEN` first,
//! so a value larger than the caller's budget is refused before it is fetched.
//! The connection manager reconnects on its own.

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Backend, COUNTER_MAX, KvError, KvResult};
use crate::budget::Budget;

pub struct Redis {
    connection: ConnectionManager,
}

impl Redis {
    pub async fn connect(url: &str) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("keyvalue: invalid Redis URL {url}: {e}"))?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|e| anyhow::anyhow!("keyvalue: cannot connect to Redis at {url}: {e}"))?;
        Ok(Redis { connection })
    }
}

/// What the increment script answers when the field holds something else.
const NOT_A_COUNTER: &str = "weft: not a counter";

/// `HINCRBY`, unless the field holds other than a counter: digits, no sign, no
/// leading zero ([`super::add_to_counter`]'s rule; `HINCRBY` refuses more than
/// `i64` holds).
const INCREMENT: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and not (string.match(v, '^[1-9]%d*$') or v == '0') then
  return redis.error_reply('weft: not a counter')
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
"#;

fn hash(bucket: &str) -> String {
    format!("weft:kv:{bucket}")
}

fn redis(e: redis::RedisError) -> KvError {
    KvError::Other(format!("Redis: {e}"))
}

#[async_trait]
impl Backend for Redis {
    async fn get(&self, bucket: &str, key: &str, budget: &Budget) -> KvResult<Option<Vec<u8>>> {
        let mut values = self.get_many(bucket, std::slice::from_ref(&key.to_string()), budget).await?;
        Ok(values.pop().flatten())
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> KvResult<()> {
        self.connection.clone().hset(hash(bucket), key, value).await.map_err(redis)
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        self.connection.clone().hdel(hash(bucket), key).await.map_err(redis)
    }

    async fn exists(&self, bucket: &str, key: &str) -> KvResult<bool> {
        self.connection.clone().hexists(hash(bucket), key).await.map_err(redis)
    }

    async fn keys(&self, bucket: &str, budget: &Budget) -> KvResult<Vec<String>> {
        // One reply (Redis 7.0's HSCAN would bring every value along): charged
        // as it arrives.
        let mut keys: Vec<String> = self.connection.clone().hkeys(hash(bucket)).await.map_err(redis)?;
        let bytes = keys.iter().map(|k| k.len() as u64).sum();
        budget.charge(bytes, "the listing").map_err(KvError::Other)?;
        keys.sort();
        Ok(keys)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let delta =
            i64::try_from(delta).map_err(|_| KvError::Other(format!("the counter would pass {COUNTER_MAX}")))?;
        // HINCRBY alone would take `-5` (or `007`) as a number: every backend
        // refuses what is not a counter, so the check runs in the same step.
        let answer: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(INCREMENT)
            .arg(1)
            .arg(hash(bucket))
            .arg(key)
            .arg(delta)
            .query_async(&mut self.connection.clone())
            .await;
        match answer {
            Ok(sum) => Ok(sum as u64),
            Err(e) if e.to_string().contains(NOT_A_COUNTER) || e.to_string().contains("not an integer") => {
                Err(KvError::Other("the value is not a counter".into()))
            }
            Err(e) if e.to_string().contains("overflow") => {
                Err(KvError::Other(format!("the counter would pass {COUNTER_MAX}")))
            }
            Err(e) => Err(redis(e)),
        }
    }

    async fn get_many(&self, bucket: &str, keys: &[String], budget: &Budget) -> KvResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut sizes = redis::pipe();
        for key in keys {
            sizes.cmd("HSTRLEN").arg(hash(bucket)).arg(key);
        }
        let sizes: Vec<u64> = sizes.query_async(&mut self.connection.clone()).await.map_err(redis)?;
        budget.charge(sizes.iter().sum(), "the values").map_err(KvError::Other)?;
        let values: Vec<Option<Vec<u8>>> = self.connection.clone().hmget(hash(bucket), keys).await.map_err(redis)?;
        // A value may have grown in between: what came beyond the sizes counts too.
        let read: u64 = values.iter().flatten().map(|v| v.len() as u64).sum();
        budget.charge(read.saturating_sub(sizes.iter().sum()), "the values").map_err(KvError::Other)?;
        Ok(values)
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // HSET applies its pairs in order: a key given twice ends with its last value.
        self.connection.clone().hset_multiple(hash(bucket), &entries).await.map_err(redis)
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> KvResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.connection.clone().hdel(hash(bucket), keys).await.map_err(redis)
    }
}
