//! Resources across in-process links.
//!
//! A resource type a provider defines lives in the provider's instance. Its callers
//! see it as a host resource of a type of its own
//! (`ResourceType::host_dynamic(payload)`, one payload per provider resource), and
//! every handle a caller holds stands for a handle the host holds in the provider,
//! kept in the store's [`Proxies`] table. A call hands the provider its own handle
//! in place of the caller's; a handle the provider returns becomes a new proxy; when
//! a caller drops its handle, the host drops the provider's and the provider's
//! destructor runs, once.
//!
//! What is the provider's own resource is read from the types: a resource of an
//! exported interface that is not one of the provider's imported resource types.
//! Resources both sides import from elsewhere (WASI streams and pollables) are
//! never proxied; their handles pass through as they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::StoreContextMut;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{
    Component, ComponentExportIndex, Instance, LinkerInstance, ResourceAny, ResourceDynamic, ResourceType, Val,
};

use crate::store::StoreState;
use crate::workload::instance::WorkloadComponent;

/// Payloads of dynamic host resource types, unique in the process.
static NEXT_PAYLOAD: AtomicU32 = AtomicU32::new(1);

/// The resource types a component defines in the interfaces it exports.
#[derive(Debug, Default)]
pub(crate) struct ProvidedResources {
    entries: Vec<Provided>,
}

#[derive(Debug)]
struct Provided {
    export: String,
    name: String,
    index: ComponentExportIndex,
    payload: u32,
}

impl ProvidedResources {
    pub fn of(component: &Component) -> ProvidedResources {
        let engine = component.engine();
        let ty = component.component_type();
        let imported: Vec<ResourceType> =
            ty.imports(engine).flat_map(|(_, item)| resource_types(engine, &item.ty)).collect();
        let mut entries = Vec::new();
        for (export, item) in ty.exports(engine) {
            let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
            let Some(instance_index) = component.get_export_index(None, export) else { continue };
            for (name, item) in instance.exports(engine) {
                if let ComponentItem::Resource(resource) = item.ty
                    && !imported.contains(&resource)
                    && let Some(index) = component.get_export_index(Some(&instance_index), name)
                {
                    let payload = NEXT_PAYLOAD.fetch_add(1, Ordering::Relaxed);
                    entries.push(Provided { export: export.to_string(), name: name.to_string(), index, payload });
                }
            }
        }
        ProvidedResources { entries }
    }

    /// The host type callers see for resource `name` of interface `export`.
    pub fn payload(&self, export: &str, name: &str) -> Option<u32> {
        self.entries.iter().find(|e| e.export == export && e.name == name).map(|e| e.payload)
    }

    /// The instance's actual resource types, each with its payload.
    pub fn instantiated(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        instance: Instance,
    ) -> Vec<(ResourceType, u32)> {
        self.entries.iter().filter_map(|e| Some((instance.get_resource(&mut *store, e.index)?, e.payload))).collect()
    }

    fn is_proxy(&self, ty: ResourceType) -> bool {
        self.entries.iter().any(|e| ty == ResourceType::host_dynamic(e.payload))
    }
}

/// The resource types an import or export introduces or mentions at its top level.
pub(crate) fn resource_types(engine: &wasmtime::Engine, item: &ComponentItem) -> Vec<ResourceType> {
    match item {
        ComponentItem::Resource(ty) => vec![*ty],
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .filter_map(|(_, item)| match item.ty {
                ComponentItem::Resource(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A stream, future or error context: values of component-model async, which,
/// like handles, belong to one store.
pub(crate) fn is_async_value(ty: &Type) -> bool {
    matches!(ty, Type::Future(_) | Type::Stream(_) | Type::ErrorContext)
}

/// An `own` or `borrow` handle.
pub(crate) fn is_handle(ty: &Type) -> bool {
    matches!(ty, Type::Own(_) | Type::Borrow(_))
}

/// Whether any parameter or result of `ty` holds a type `leaf` picks.
pub(crate) fn func_has(ty: &ComponentFunc, leaf: &dyn Fn(&Type) -> bool) -> bool {
    ty.params().any(|(_, t)| any_part(&t, leaf)) || ty.results().any(|t| any_part(&t, leaf))
}

/// Whether `ty`, or any type inside it, is one `leaf` picks.
pub(crate) fn any_part(ty: &Type, leaf: &dyn Fn(&Type) -> bool) -> bool {
    leaf(ty)
        || match ty {
            Type::List(l) => any_part(&l.ty(), leaf),
            Type::FixedLengthList(l) => any_part(&l.ty(), leaf),
            Type::Map(m) => any_part(&m.key(), leaf) || any_part(&m.value(), leaf),
            Type::Record(r) => r.fields().any(|f| any_part(&f.ty, leaf)),
            Type::Tuple(t) => t.types().any(|t| any_part(&t, leaf)),
            Type::Variant(v) => v.cases().any(|c| c.ty.as_ref().is_some_and(|t| any_part(t, leaf))),
            Type::Option(o) => any_part(&o.ty(), leaf),
            Type::Result(r) => {
                r.ok().as_ref().is_some_and(|t| any_part(t, leaf))
                    || r.err().as_ref().is_some_and(|t| any_part(t, leaf))
            }
            _ => false,
        }
}

/// The provider handles that callers hold proxies for, in one store; a proxy's
/// `rep` is its slot here.
#[derive(Debug, Default)]
pub(crate) struct Proxies {
    slots: Vec<Option<ResourceAny>>,
    free: Vec<u32>,
}

impl Proxies {
    fn insert(&mut self, handle: ResourceAny) -> u32 {
        match self.free.pop() {
            Some(rep) => {
                self.slots[rep as usize] = Some(handle);
                rep
            }
            None => {
                self.slots.push(Some(handle));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, rep: u32) -> Option<ResourceAny> {
        let handle = self.slots.get_mut(rep as usize)?.take()?;
        self.free.push(rep);
        Some(handle)
    }

    fn get(&self, rep: u32) -> Option<ResourceAny> {
        *self.slots.get(rep as usize)?
    }

    /// Provider handles held for callers right now.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Defines resource `name` in a caller's view of a provider's interface.
pub(crate) fn define_proxy(
    linker: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    payload: u32,
    provider: &Arc<WorkloadComponent>,
) -> wasmtime::Result<()> {
    let provider = provider.clone();
    linker.resource_async(name, ResourceType::host_dynamic(payload), move |mut store, rep| {
        let provider = provider.clone();
        Box::new(async move {
            let Some(handle) = store.data_mut().proxies.take(rep) else { return Ok(()) };
            let caller = store.data_mut().enter(provider.index, None);
            let dropped = handle.resource_drop_async(&mut store).await;
            store.data_mut().leave(caller);
            dropped.map_err(|e| e.context(format!("in component `{}`, dropping a resource", provider.name)))
        })
    })
}

/// Replaces the caller's proxy handles in `values` by the provider's handles: an
/// owned proxy hands its handle over, a borrowed one lends it.
pub(crate) fn unwrap_proxies(
    store: &mut StoreContextMut<'_, StoreState>,
    values: &mut [Val],
    provider: &WorkloadComponent,
) -> wasmtime::Result<()> {
    for value in values {
        visit_handles(value, &mut |handle| {
            if !provider.resources.is_proxy(handle.ty()) {
                return Ok(());
            }
            let proxy = ResourceDynamic::try_from_resource_any(*handle, &mut *store)?;
            let proxies = &mut store.data_mut().proxies;
            let target = if proxy.owned() { proxies.take(proxy.rep()) } else { proxies.get(proxy.rep()) };
            *handle = target.ok_or_else(|| wasmtime::format_err!("a resource handle was used after it was dropped"))?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Ends the caller's borrows that were lent on to the provider as they were (a
/// borrowed WASI stream, say): Wasmtime requires every borrow the host receives to
/// be released before the host function returns.
pub(crate) async fn release_borrows(
    store: &mut StoreContextMut<'_, StoreState>,
    params: &[Val],
    provider: &WorkloadComponent,
) -> wasmtime::Result<()> {
    let mut borrows = Vec::new();
    for value in params {
        collect_handles(value, &mut borrows);
    }
    borrows.retain(|h| !h.owned() && !provider.resources.is_proxy(h.ty()));
    for handle in borrows {
        handle.resource_drop_async(&mut *store).await?;
    }
    Ok(())
}

/// Replaces handles of the provider's own resources in `values` (its results) by
/// new proxies for the caller.
pub(crate) fn wrap_provided(
    store: &mut StoreContextMut<'_, StoreState>,
    values: &mut [Val],
    provider: &WorkloadComponent,
) -> wasmtime::Result<()> {
    let types = store.data().frame(provider.index).map(|f| f.provided.clone()).unwrap_or_default();
    for value in values {
        visit_handles(value, &mut |handle| {
            let Some((_, payload)) = types.iter().find(|(ty, _)| *ty == handle.ty()) else { return Ok(()) };
            let rep = store.data_mut().proxies.insert(*handle);
            *handle = ResourceDynamic::new_own(rep, *payload).try_into_resource_any(&mut *store)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Every resource handle inside `value`.
fn collect_handles(value: &Val, out: &mut Vec<ResourceAny>) {
    match value {
        Val::Resource(handle) => out.push(*handle),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            items.iter().for_each(|v| collect_handles(v, out))
        }
        Val::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            collect_handles(k, out);
            collect_handles(v, out)
        }),
        Val::Record(fields) => fields.iter().for_each(|(_, v)| collect_handles(v, out)),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) | Val::Result(Ok(Some(v)) | Err(Some(v))) => {
            collect_handles(v, out)
        }
        _ => {}
    }
}

/// Calls `f` on every resource handle inside `value`.
fn visit_handles(value: &mut Val, f: &mut dyn FnMut(&mut ResourceAny) -> wasmtime::Result<()>) -> wasmtime::Result<()> {
    match value {
        Val::Resource(handle) => f(handle),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            items.iter_mut().try_for_each(|v| visit_handles(v, f))
        }
        Val::Map(pairs) => pairs.iter_mut().try_for_each(|(k, v)| {
            visit_handles(k, f)?;
            visit_handles(v, f)
        }),
        Val::Record(fields) => fields.iter_mut().try_for_each(|(_, v)| visit_handles(v, f)),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) | Val::Result(Ok(Some(v)) | Err(Some(v))) => {
            visit_handles(v, f)
        }
        _ => Ok(()),
    }
}
