//! In-process links: a caller's import served by another component's export.
//!
//! `dynamic` mode: every function of the import is defined in the caller's linker as
//! a host function that forwards to the provider's export *in the same store*. The
//! provider is instantiated in that store on first use and reused until the
//! top-level invocation ends. Values cross as [`Val`]s; resources the provider
//! defines reach the caller as host resources that stand for the provider's handles
//! (see [`resources`]), while resources that both sides import from elsewhere (WASI
//! streams, pollables) pass through untouched.

pub(crate) mod compat;
pub(crate) mod fuse;
pub(crate) mod remote;
pub(crate) mod resources;
pub(crate) mod shared;
pub(crate) mod slots;

use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{ComponentExportIndex, Instance, Linker, LinkerInstance, ResourceType, Val};

use self::resources::{any_part, has_resources, release_borrows, unwrap_proxies, wrap_provided};
use crate::store::StoreState;
use crate::workload::instance::WorkloadComponent;

/// Defines `import` in a caller's linker by forwarding to `provider`'s `export`.
///
/// `earlier` holds the resource types of the caller's imports that come before this
/// one: a resource of `import` found among them is a `use` of another interface's
/// type (a WASI stream, say), which needs no definition and passes through.
pub(crate) fn forward_import(
    linker: &mut Linker<StoreState>,
    import: &str,
    item: &ComponentItem,
    earlier: &[ResourceType],
    provider: &Arc<WorkloadComponent>,
    export: &str,
) -> wasmtime::Result<()> {
    let component = &provider.component;
    let missing = |what: &str| wasmtime::format_err!("component `{}` has no export `{what}`", provider.name);
    match item {
        ComponentItem::ComponentInstance(ty) => {
            let instance = component.get_export_index(None, export).ok_or_else(|| missing(export))?;
            let mut linker = linker.instance(import)?;
            for (name, item) in ty.exports(component.engine()) {
                match item.ty {
                    ComponentItem::ComponentFunc(func_ty) => {
                        let func = component
                            .get_export_index(Some(&instance), name)
                            .ok_or_else(|| missing(&format!("{export}#{name}")))?;
                        forward_func(&mut linker, name, &func_ty, provider, func, format!("{export}#{name}"))?;
                    }
                    ComponentItem::Resource(ty) if earlier.contains(&ty) => {}
                    ComponentItem::Resource(_) => {
                        let payload = provider.resources.payload(export, name).ok_or_else(|| {
                            wasmtime::format_err!(
                                "resource `{name}` of `{export}` is not one that component `{}` defines",
                                provider.name
                            )
                        })?;
                        resources::define_proxy(&mut linker, name, payload, provider)?;
                    }
                    // Value types need no definition: the function types carry them.
                    ComponentItem::Type(_) => {}
                    other => {
                        wasmtime::bail!("`{import}` exports `{name}` ({other:?}), which in-process links cannot carry")
                    }
                }
            }
            Ok(())
        }
        ComponentItem::ComponentFunc(func_ty) => {
            let func = component.get_export_index(None, export).ok_or_else(|| missing(export))?;
            forward_func(&mut linker.root(), import, func_ty, provider, func, export.to_string())
        }
        other => wasmtime::bail!("import `{import}` ({other:?}) cannot be linked to a component"),
    }
}

/// One forwarded function.
struct Forward {
    provider: Arc<WorkloadComponent>,
    func: ComponentExportIndex,
    label: Box<str>,
    /// Whether any parameter or result can hold a resource handle; only then are
    /// values walked to translate handles.
    resources: bool,
}

fn forward_func(
    linker: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    ty: &ComponentFunc,
    provider: &Arc<WorkloadComponent>,
    func: ComponentExportIndex,
    label: String,
) -> wasmtime::Result<()> {
    // A host function between two guest tasks in one store would need the WASI
    // context of whichever task calls it (interleaved tasks); until weft tracks
    // that, component-model async crosses links fused, or to a shared provider.
    let is_async = |t: &Type| any_part(t, &|t| matches!(t, Type::Future(_) | Type::Stream(_) | Type::ErrorContext));
    if ty.async_() || ty.params().any(|(_, t)| is_async(&t)) || ty.results().any(|t| is_async(&t)) {
        wasmtime::bail!(
            "`{name}` is an `async func` or carries a stream or future, which links only fused (or to a shared \
             provider), not dynamic"
        );
    }
    let forward = Arc::new(Forward {
        provider: provider.clone(),
        func,
        label: label.into(),
        resources: ty.params().any(|(_, t)| has_resources(&t)) || ty.results().any(|t| has_resources(&t)),
    });
    linker.func_new_async(name, move |mut store, _ty, params, results| {
        let forward = forward.clone();
        Box::new(async move { forward.call(&mut store, params, results).await })
    })
}

impl Forward {
    async fn call(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let provider = &*self.provider;
        let instance = instance_of(store, provider).await?;
        let func = instance.get_func(&mut *store, self.func).ok_or_else(|| {
            wasmtime::format_err!("`{}` of component `{}` is not a function", self.label, provider.name)
        })?;
        // Traced, a dynamic link is a span of the caller's trace, and the
        // provider's code runs inside it.
        let span = match store.data().trace_context() {
            Some(parent) => {
                let mut span = store.data().telemetry().span(
                    format!("{} {}", provider.name, self.label),
                    crate::telemetry::model::SpanKind::Internal,
                    Some(parent),
                );
                span.set("weft.link.mode", "dynamic");
                span.set("weft.component", &*provider.name);
                span.set("weft.function", &*self.label);
                Some(span)
            }
            None => None,
        };
        let outer = span.as_ref().map(|s| store.data_mut().swap_trace_context(s.context().cloned()));
        let caller = store.data_mut().enter(provider.index, None);
        let outcome = if self.resources {
            let mut provider_params = params.to_vec();
            let outcome = match unwrap_proxies(store, &mut provider_params, provider) {
                Ok(()) => func.call_async(&mut *store, &provider_params, results).await,
                Err(e) => Err(e),
            };
            release_borrows(store, params, provider).await.and(outcome)
        } else {
            func.call_async(&mut *store, params, results).await
        };
        store.data_mut().leave(caller);
        if let (Some(mut span), Some(outer)) = (span, outer) {
            store.data_mut().swap_trace_context(outer);
            if let Err(e) = &outcome {
                span.fail(e.to_string());
            }
        }
        outcome.map_err(|e| e.context(format!("in component `{}`, calling `{}`", provider.name, self.label)))?;
        if self.resources {
            wrap_provided(store, results, provider)?;
        }
        Ok(())
    }
}

/// The provider's instance in this store, instantiated on first use.
async fn instance_of(
    store: &mut StoreContextMut<'_, StoreState>,
    provider: &WorkloadComponent,
) -> wasmtime::Result<Instance> {
    if let Some(instance) = store.data().frame(provider.index).and_then(|f| f.instance) {
        return Ok(instance);
    }
    store.data_mut().ensure_frame(provider.index, || provider.new_frame())?;
    provider.prepare_members(store.data_mut())?;
    let caller = store.data_mut().enter(provider.index, None);
    let instantiated = provider.pre.instantiate_async(&mut *store).await;
    store.data_mut().leave(caller);
    let instance = instantiated.map_err(|e| e.context(format!("cannot instantiate component `{}`", provider.name)))?;
    let types = provider.resources.instantiated(&mut *store, instance);
    let frame = store.data_mut().frames[provider.index].as_mut().expect("frame just created");
    frame.instance = Some(instance);
    frame.provided = types;
    Ok(instance)
}
