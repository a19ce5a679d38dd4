//! Buckets in the host's memory: the default, gone when the host stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Backend, KvError, KvResult, add_to_counter};
use crate::budget::Budget;

#[derive(Default)]
pub struct Memory {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

#[async_trait]
impl Backend for Memory {
    async fn get(&self, bucket: &str, key: &str, budget: &Budget) -> KvResult<Option<Vec<u8>>> {
        let buckets = self.buckets.lock().unwrap();
        read(buckets.get(bucket).and_then(|b| b.get(key)), budget)
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

    async fn exists(&self, bucket: &str, key: &str) -> KvResult<bool> {
        Ok(self.buckets.lock().unwrap().get(bucket).is_some_and(|b| b.contains_key(key)))
    }

    async fn keys(&self, bucket: &str, budget: &Budget) -> KvResult<Vec<String>> {
        let buckets = self.buckets.lock().unwrap();
        let keys = buckets.get(bucket).into_iter().flat_map(|b| b.keys());
        keys.map(|key| budget.charge(key.len() as u64, "the listing").map(|()| key.clone()).map_err(KvError::Other))
            .collect()
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let mut buckets = self.buckets.lock().unwrap();
        let values = buckets.entry(bucket.to_string()).or_default();
        let sum = add_to_counter(values.get(key).map(Vec::as_slice), delta)?;
        values.insert(key.to_string(), sum.to_string().into_bytes());
        Ok(sum)
    }

    // Batches under one lock: nothing to overlap.
    async fn get_many(&self, bucket: &str, keys: &[String], budget: &Budget) -> KvResult<Vec<Option<Vec<u8>>>> {
        let buckets = self.buckets.lock().unwrap();
        let values = buckets.get(bucket);
        keys.iter().map(|key| read(values.and_then(|b| b.get(key)), budget)).collect()
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

/// A copy of `value` for the caller, charged first.
fn read(value: Option<&Vec<u8>>, budget: &Budget) -> KvResult<Option<Vec<u8>>> {
    let Some(value) = value else { return Ok(None) };
    budget.charge(value.len() as u64, "the value").map_err(KvError::Other)?;
    Ok(Some(value.clone()))
}
