//! In-process links: a caller's import served by another component's export.
//!
//! `dynamic` mode: every function of the import is defined in the caller's linker as
//! a host function that forwards to the provider's export *in the same store*. The
//! provider is instantiated in that store on first use and reused until the
//! top-level invocation ends. Values cross as [`Val`]s; resources the provider
//! defines reach the caller as host resources that stand for the provider's handles
//! (see [`resources`]), while resources that both sides import from elsewhere (WASI
//! streams, pollables) pass through untouched.

pub(crate) mod call_memory;
pub(crate) mod compat;
pub(crate) mod fuse;
pub(crate) mod remote;
pub(crate) mod resources;
pub(crate) mod shared;
pub(crate) mod slots;

use std::sync::Arc;

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Accessor, AccessorTask, ComponentExportIndex, Func, Instance, Linker, LinkerInstance, ResourceType, Val,
};
use wasmtime::{AsContextMut, StoreContextMut};

use self::call_memory::Placed;
use self::resources::{func_has, is_async_value, is_handle, release_borrows, unwrap_proxies, wrap_provided};
use crate::engine::Concurrency;
use crate::remote::Shape;
use crate::remote::shape::{Values, with_shape};
use crate::store::StoreState;
use crate::telemetry::{ActiveSpan, SpanContext};
use crate::workload::instance::WorkloadComponent;

/// Defines `import` in a caller's linker by forwarding to `provider`'s `export`.
///
/// `earlier` holds the resource types of the caller's imports that come before this
/// one: a resource of `import` found among them is a `use` of another interface's
/// type (a WASI stream, say), which needs no definition and passes through.
///
/// Returns whether any function of it is async (an `async func`, or one carrying
/// a stream or future): then the provider must be instantiated with the caller.
pub(crate) fn forward_import(
    linker: &mut Linker<StoreState>,
    import: &str,
    item: &ComponentItem,
    earlier: &[ResourceType],
    provider: &Arc<WorkloadComponent>,
    export: &str,
    concurrency: Concurrency,
) -> wasmtime::Result<bool> {
    let mut any_async = false;
    each_part(linker, import, item, provider, export, |linker, part| {
        match part {
            Part::Func { name, label, ty, func } => {
                any_async |= forward_func(linker, name, ty, provider, func, label, concurrency)?;
            }
            // A `use` of another interface's resource (a WASI stream): it passes through.
            Part::Other { item: ComponentItem::Resource(ty), .. } if earlier.contains(ty) => {}
            Part::Other { name, item: ComponentItem::Resource(_) } => {
                let payload = provider.resources.payload(export, name).ok_or_else(|| {
                    wasmtime::format_err!(
                        "resource `{name}` of `{export}` is not one that component `{}` defines",
                        provider.name
                    )
                })?;
                resources::define_proxy(linker, name, payload, provider)?;
            }
            // Value types need no definition: the function types carry them.
            Part::Other { item: ComponentItem::Type(_), .. } => {}
            Part::Other { name, item } => {
                wasmtime::bail!("`{import}` exports `{name}` ({item:?}), which in-process links cannot carry")
            }
        }
        Ok(())
    })?;
    Ok(any_async)
}

/// An item of an import that a provider's export serves.
pub(crate) enum Part<'a> {
    /// A function, with the provider's export of it.
    Func {
        name: &'a str,
        label: String,
        ty: &'a ComponentFunc,
        func: ComponentExportIndex,
    },
    Other {
        name: &'a str,
        item: &'a ComponentItem,
    },
}

/// Hands each item of `import` (an interface, or one function) to `define`,
/// with the linker instance to define it in and, for a function, the index of
/// `provider`'s export of it.
pub(crate) fn each_part(
    linker: &mut Linker<StoreState>,
    import: &str,
    item: &ComponentItem,
    provider: &WorkloadComponent,
    export: &str,
    mut define: impl FnMut(&mut LinkerInstance<'_, StoreState>, Part<'_>) -> wasmtime::Result<()>,
) -> wasmtime::Result<()> {
    let component = &provider.component;
    let missing = |what: &str| wasmtime::format_err!("component `{}` has no export `{what}`", provider.name);
    match item {
        ComponentItem::ComponentInstance(ty) => {
            let instance = component.get_export_index(None, export).ok_or_else(|| missing(export))?;
            let mut linker = linker.instance(import)?;
            for (name, item) in ty.exports(component.engine()) {
                let part = match &item.ty {
                    ComponentItem::ComponentFunc(ty) => {
                        let label = format!("{export}#{name}");
                        let func = component.get_export_index(Some(&instance), name).ok_or_else(|| missing(&label))?;
                        define(&mut linker, Part::Func { name, label, ty, func })
                    }
                    other => define(&mut linker, Part::Other { name, item: other }),
                };
                part?;
            }
            Ok(())
        }
        ComponentItem::ComponentFunc(ty) => {
            let func = component.get_export_index(None, export).ok_or_else(|| missing(export))?;
            define(&mut linker.root(), Part::Func { name: import, label: export.to_string(), ty, func })
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
    /// The caller's engine: with concurrency, every call into the provider is a
    /// guest task the store's call hook must know of.
    concurrency: Concurrency,
}

/// Defines one forwarded function; returns whether it is async.
fn forward_func(
    linker: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    ty: &ComponentFunc,
    provider: &Arc<WorkloadComponent>,
    func: ComponentExportIndex,
    label: String,
    concurrency: Concurrency,
) -> wasmtime::Result<bool> {
    let resources = func_has(ty, &is_handle);
    let forward = Arc::new(Forward { provider: provider.clone(), func, label: label.into(), resources, concurrency });
    if !(ty.async_() || func_has(ty, &is_async_value)) {
        // Bytes cross typed, copied whole, where the function's shape allows
        // (a `Val` per byte is most of a 64 KiB call's cost otherwise).
        if concurrency == Concurrency::Off
            && let Some(shape) = Shape::of(ty)
        {
            with_shape!(shape, P, R, { forward_typed::<P, R>(linker, name, forward)? });
            return Ok(false);
        }
        linker.func_new_async(name, move |mut store, _ty, params, results| {
            let forward = forward.clone();
            Box::new(async move { forward.call(&mut store, params, results).await })
        })?;
        return Ok(false);
    }
    if resources {
        wasmtime::bail!(
            "`{name}` is async and carries a resource handle, which a dynamic link cannot carry yet (a fused one can)"
        );
    }
    if !ty.async_() {
        // Wasmtime takes only a blocking host function for a plain function,
        // and a blocking call cannot hand a stream or future on between tasks.
        wasmtime::bail!(
            "`{name}` is a plain function carrying a stream or future, which a dynamic link cannot carry (a fused \
             one can)"
        );
    }
    linker.func_new_concurrent(name, move |accessor, _ty, params, results| {
        let forward = forward.clone();
        Box::pin(async move { forward.call_concurrent(accessor, params, results).await })
    })?;
    Ok(true)
}

/// A typed forward: `P` and `R` are the Rust types of a [`Shape`].
fn forward_typed<P: Values, R: Values>(
    linker: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    forward: Arc<Forward>,
) -> wasmtime::Result<()> {
    linker.func_wrap_async(name, move |mut store, params: P| {
        let forward = forward.clone();
        Box::new(async move { forward.call_typed::<P, R>(&mut store, params).await })
    })
}

/// What a call across the link changes in the store while it runs.
struct Crossing {
    caller: usize,
    span: Option<ActiveSpan>,
    outer: Option<Option<SpanContext>>,
}

impl Forward {
    /// Whether the provider has its instance in this store (else it is made on
    /// first use, outside [`Forward::enter`]: boxed and awaited by the caller, so
    /// that instantiation's state does not weigh on every call's future).
    fn instantiated(&self, store: &StoreContextMut<'_, StoreState>) -> bool {
        store.data().frame(self.provider.index).is_some_and(|f| f.instance.is_some())
    }

    /// Finds the provider's function and makes the provider the running
    /// component, inside a span of the caller's trace when tracing is on.
    fn enter(&self, store: &mut StoreContextMut<'_, StoreState>) -> wasmtime::Result<(Func, Crossing)> {
        let provider = &*self.provider;
        let instance = store
            .data()
            .frame(provider.index)
            .and_then(|f| f.instance)
            .ok_or_else(|| wasmtime::format_err!("component `{}` has no instance in this store", provider.name))?;
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
        Ok((func, Crossing { caller, span, outer }))
    }

    /// Gives the store back to the caller, with the call's outcome.
    fn leave<T>(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        crossing: Crossing,
        outcome: wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        store.data_mut().leave(crossing.caller);
        if let (Some(mut span), Some(outer)) = (crossing.span, crossing.outer) {
            store.data_mut().swap_trace_context(outer);
            if let Err(e) = &outcome {
                span.fail(e.to_string());
            }
        }
        outcome.map_err(|e| e.context(format!("in component `{}`, calling `{}`", self.provider.name, self.label)))
    }

    async fn call(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let provider = &*self.provider;
        if !self.instantiated(store) {
            Box::pin(instance_of(store, provider)).await?;
        }
        let (func, crossing) = self.enter(store)?;
        let outcome = if self.resources {
            let mut provider_params = params.to_vec();
            let outcome = match unwrap_proxies(store, &mut provider_params, provider) {
                Ok(()) => self.call_provider(store, func, &provider_params, results).await,
                Err(e) => Err(e),
            };
            Box::pin(release_borrows(store, params, provider)).await.and(outcome)
        } else {
            self.call_provider(store, func, params, results).await
        };
        self.leave(store, crossing, outcome)?;
        if self.resources {
            wrap_provided(store, results, provider)?;
        }
        Ok(())
    }

    /// A call of a typed [`Shape`] (engine without concurrency only).
    async fn call_typed<P: Values, R: Values>(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        params: P,
    ) -> wasmtime::Result<R> {
        if !self.instantiated(store) {
            Box::pin(instance_of(store, &self.provider)).await?;
        }
        let (func, crossing) = self.enter(store)?;
        let outcome = match func.typed::<P, R>(&*store) {
            Ok(typed) => {
                let memory = store.data_mut().take_call_memory();
                let (outcome, memory) = Placed::new(memory, typed.call_async(&mut *store, params)).await;
                store.data_mut().give_back_call_memory(memory);
                outcome
            }
            Err(e) => Err(e),
        };
        self.leave(store, crossing, outcome)
    }

    /// The provider's export, called from a blocking host function. With
    /// concurrency, its task is registered so that the host calls it makes are
    /// served as the provider's however tasks interleave.
    async fn call_provider(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        func: Func,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        if self.concurrency == Concurrency::Off {
            let memory = store.data_mut().take_call_memory();
            let (outcome, memory) = Placed::new(memory, func.call_async(&mut *store, params, results)).await;
            store.data_mut().give_back_call_memory(memory);
            return outcome;
        }
        // Boxed: kept out of the state of the engine-without-concurrency path,
        // which every WASI 0.2 hop allocates.
        Box::pin(self.call_as_task(store, func, params, results)).await
    }

    async fn call_as_task(
        &self,
        store: &mut StoreContextMut<'_, StoreState>,
        func: Func,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let call = func.start_call_concurrent(&mut *store, params, results)?;
        let task = call.task();
        store.data_mut().tasks.push((task, self.provider.index));
        let outcome = store
            .as_context_mut()
            .run_concurrent(async |accessor| func.finish_call_concurrent(accessor, call).await)
            .await;
        store.data_mut().tasks.retain(|(t, _)| *t != task);
        outcome.and_then(|r| r)
    }

    /// An async function: the call is a task of its own in the caller's store,
    /// spawned so that it is accounted for to its end even if the caller drops
    /// the call (Wasmtime 48 cannot cancel a guest task the host started: the
    /// provider's task runs on, its answer unread).
    async fn call_concurrent(
        &self,
        accessor: &Accessor<StoreState>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let provider = &*self.provider;
        let func = accessor.with(|mut store| {
            let instance = store.data_mut().frame(provider.index).and_then(|f| f.instance).ok_or_else(|| {
                wasmtime::format_err!("component `{}` was not instantiated with its caller", provider.name)
            })?;
            instance.get_func(&mut store, self.func).ok_or_else(|| {
                wasmtime::format_err!("`{}` of component `{}` is not a function", self.label, provider.name)
            })
        })?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let task =
            ProviderTask { func, provider: provider.index, params: params.to_vec(), results: results.len(), reply };
        accessor.spawn(task)?;
        let values = answer
            .await
            .unwrap_or_else(|_| Err(wasmtime::format_err!("the call ended without an answer")))
            .map_err(|e| e.context(format!("in component `{}`, calling `{}`", provider.name, self.label)))?;
        for (slot, value) in results.iter_mut().zip(values) {
            *slot = value;
        }
        Ok(())
    }
}

/// One call of an async function through a dynamic link, as a task of the store.
struct ProviderTask {
    func: Func,
    provider: usize,
    params: Vec<Val>,
    results: usize,
    reply: tokio::sync::oneshot::Sender<wasmtime::Result<Vec<Val>>>,
}

impl AccessorTask<StoreState> for ProviderTask {
    async fn run(self, accessor: &Accessor<StoreState>) -> wasmtime::Result<()> {
        let ProviderTask { func, provider, params, results, reply } = self;
        let mut values = vec![Val::Bool(false); results];
        let started = accessor.with(|mut store| {
            let call = func.start_call_concurrent(&mut store, &params, &mut values)?;
            store.data_mut().tasks.push((call.task(), provider));
            Ok::<_, wasmtime::Error>(call)
        });
        let outcome = match started {
            Ok(call) => {
                let task = call.task();
                let outcome = func.finish_call_concurrent(accessor, call).await;
                accessor.with(|mut store| store.data_mut().tasks.retain(|(t, _)| *t != task));
                outcome
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(outcome.map(|()| values));
        Ok(())
    }
}

/// The provider's instance in this store, instantiated on first use.
pub(crate) async fn instance_of(
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
