//! Containers in the host's memory: the default, gone when the host stops.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BlobResult, ObjectInfo, Reader, now};
use crate::budget::Budget;

#[derive(Default)]
pub struct Memory {
    containers: Mutex<HashMap<String, Container>>,
}

struct Container {
    created_at: u64,
    objects: BTreeMap<String, (Bytes, u64)>,
}

fn missing(container: &str) -> String {
    format!("container `{container}` does not exist")
}

#[async_trait]
impl Backend for Memory {
    async fn create_container(&self, name: &str) -> BlobResult<()> {
        let mut containers = self.containers.lock().unwrap();
        if containers.contains_key(name) {
            return Err(format!("container `{name}` already exists"));
        }
        containers.insert(name.to_string(), Container { created_at: now(), objects: BTreeMap::new() });
        Ok(())
    }

    async fn container(&self, name: &str) -> BlobResult<Option<u64>> {
        Ok(self.containers.lock().unwrap().get(name).map(|c| c.created_at))
    }

    async fn delete_container(&self, name: &str) -> BlobResult<()> {
        self.containers.lock().unwrap().remove(name).map(|_| ()).ok_or_else(|| missing(name))
    }

    async fn put(&self, container: &str, object: &str, staged: &Path) -> BlobResult<()> {
        let bytes = tokio::fs::read(staged).await.map_err(|e| e.to_string())?;
        let mut containers = self.containers.lock().unwrap();
        let c = containers.get_mut(container).ok_or_else(|| missing(container))?;
        c.objects.insert(object.to_string(), (bytes.into(), now()));
        Ok(())
    }

    async fn read(&self, container: &str, object: &str, start: u64, len: u64) -> BlobResult<Reader> {
        let containers = self.containers.lock().unwrap();
        let c = containers.get(container).ok_or_else(|| missing(container))?;
        let (bytes, _) = c.objects.get(object).ok_or_else(|| format!("object `{object}` does not exist"))?;
        let end = (start + len).min(bytes.len() as u64) as usize;
        Ok(Box::new(std::io::Cursor::new(bytes.slice(start as usize..end))))
    }

    async fn info(&self, container: &str, object: &str) -> BlobResult<Option<ObjectInfo>> {
        let containers = self.containers.lock().unwrap();
        let c = containers.get(container).ok_or_else(|| missing(container))?;
        Ok(c.objects.get(object).map(|(b, created_at)| ObjectInfo { size: b.len() as u64, created_at: *created_at }))
    }

    async fn list(&self, container: &str, budget: &Budget) -> BlobResult<Vec<String>> {
        let containers = self.containers.lock().unwrap();
        let objects = &containers.get(container).ok_or_else(|| missing(container))?.objects;
        objects.keys().map(|name| budget.charge(name.len() as u64, "the listing").map(|()| name.clone())).collect()
    }

    async fn delete(&self, container: &str, object: &str) -> BlobResult<()> {
        let mut containers = self.containers.lock().unwrap();
        containers.get_mut(container).ok_or_else(|| missing(container))?.objects.remove(object);
        Ok(())
    }

    async fn copy(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()> {
        let mut containers = self.containers.lock().unwrap();
        let source = containers.get(from.0).ok_or_else(|| missing(from.0))?;
        let value = source.objects.get(from.1).cloned().ok_or_else(|| format!("object `{}` does not exist", from.1))?;
        containers.get_mut(to.0).ok_or_else(|| missing(to.0))?.objects.insert(to.1.to_string(), (value.0, now()));
        Ok(())
    }
}
