//! Buckets in Redis: one hash per bucket (`weft:kv:<bucket>`), increments with
//! `HINCRBY`, a batch in one command (`HMGET`, `HSET`, `HDEL` with many fields).
//! The connection manager reconnects on its own.

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Backend, KvError, KvResult};

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

fn hash(bucket: &str) -> String {
    format!("weft:kv:{bucket}")
}

fn redis(e: redis::RedisError) -> KvError {
    KvError::Other(format!("Redis: {e}"))
}

#[async_trait]
impl Backend for Redis {
    async fn get(&self, bucket: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.connection.clone().hget(hash(bucket), key).await.map_err(redis)
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

    async fn keys(&self, bucket: &str) -> KvResult<Vec<String>> {
        let mut keys: Vec<String> = self.connection.clone().hkeys(hash(bucket)).await.map_err(redis)?;
        keys.sort();
        Ok(keys)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let delta = i64::try_from(delta).map_err(|_| KvError::Other("Redis: the increment exceeds i64".into()))?;
        let sum: i64 = self.connection.clone().hincr(hash(bucket), key, delta).await.map_err(redis)?;
        Ok(sum as u64)
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> KvResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.connection.clone().hmget(hash(bucket), keys).await.map_err(redis)
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
