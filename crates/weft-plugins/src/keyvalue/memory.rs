//! Buckets in the host's memory: the default, gone when the host stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Backend, KvResult, counter};

#[derive(Default)]
pub struct Memory {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

#[async_trait]
impl Backend for Memory {
    async fn get(&self, bucket: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        Ok(self.buckets.lock().unwrap().get(bucket).and_then(|b| b.get(key)).cloned())
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> KvResult<()> {
        self.buckets.lock().unwrap().entry(bucket.to_string()).or_default().insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        if let Some(b) = self.buckets.lock().unwrap().get_mut(bucket) {
            b.remove(key);
        }
        Ok(())
    }

    async fn keys(&self, bucket: &str) -> KvResult<Vec<String>> {
        Ok(self.buckets.lock().unwrap().get(bucket).map(|b| b.keys().cloned().collect()).unwrap_or_default())
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let mut buckets = self.buckets.lock().unwrap();
        let values = buckets.entry(bucket.to_string()).or_default();
        let sum = counter(values.get(key).map(Vec::as_slice))?.wrapping_add(delta);
        values.insert(key.to_string(), sum.to_string().into_bytes());
        Ok(sum)
    }

    // Batches under one lock: nothing to overlap.
    async fn get_many(&self, bucket: &str, keys: &[String]) -> KvResult<Vec<Option<Vec<u8>>>> {
        let buckets = self.buckets.lock().unwrap();
        let values = buckets.get(bucket);
        Ok(keys.iter().map(|key| values.and_then(|b| b.get(key)).cloned()).collect())
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        self.buckets.lock().unwrap().entry(bucket.to_string()).or_default().extend(entries);
        Ok(())
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> KvResult<()> {
        if let Some(values) = self.buckets.lock().unwrap().get_mut(bucket) {
            for key in keys {
                values.remove(key);
            }
        }
        Ok(())
    }
}
