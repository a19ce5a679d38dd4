//! Remote links, the calling side: every function of the import is a host
//! function that hands the call, as [`Value`]s with their types, to the lattice
//! ([`RemoteLinks`]); functions of a typed [`Shape`] are typed host functions. A failed call traps the caller with a message naming the
//! interface, the function and the cause.

use std::sync::Arc;

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Linker, WasmList};

use crate::remote::shape::{Values, with_results, with_shape};
use crate::remote::{Arg, RemoteCall, RemoteLinks, Shape, Value};
use crate::store::StoreState;
use crate::telemetry::model::SpanKind;

/// Defines `name` (the import `interface`, perhaps renamed for a composite's
/// member) in the linker by calls to the lattice.
pub(crate) fn forward_import(
    linker: &mut Linker<StoreState>,
    name: &str,
    interface: &str,
    item: &ComponentItem,
    remote: &Arc<dyn RemoteLinks>,
    group: Option<&str>,
) -> wasmtime::Result<()> {
    let ComponentItem::ComponentInstance(ty) = item else {
        wasmtime::bail!("only interfaces can be linked to the lattice, and `{interface}` is not one");
    };
    let engine = linker.engine().clone();
    let mut instance = linker.instance(name)?;
    for (function, item) in ty.exports(&engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                remote.check(&func).map_err(|why| wasmtime::format_err!("`{function}`: {why}"))?;
                define(&mut instance, interface, function, &func, remote, group)?;
            }
            ComponentItem::Resource(_) => {
                wasmtime::bail!("it has resource `{function}`, and resources cannot cross a remote link")
            }
            ComponentItem::Type(_) => {}
            other => wasmtime::bail!("`{function}` ({other:?}) cannot cross a remote link"),
        }
    }
    Ok(())
}

struct Remote {
    remote: Arc<dyn RemoteLinks>,
    group: Option<Box<str>>,
    interface: Box<str>,
    function: Box<str>,
    params: Vec<Type>,
    results: Vec<Type>,
}

impl Remote {
    /// One call, from the store of the caller's invocation.
    /// (The store is read before the call goes, not held while it is away.)
    fn run<'a>(
        &'a self,
        data: &StoreState,
        params: &'a [Arg<'a>],
    ) -> impl Future<Output = wasmtime::Result<Vec<Value>>> + Send + 'a {
        // Traced, the call is a client span of the caller's trace, the parent
        // of the serving host's invocation.
        let mut span = match data.trace_context() {
            Some(parent) => {
                let name = format!("{}/{}", self.interface, self.function);
                let mut span = data.telemetry().span(name, SpanKind::Client, Some(parent));
                span.set("weft.link.mode", "remote");
                span.set("rpc.system", "wrpc");
                span.set("rpc.service", &*self.interface);
                span.set("rpc.method", &*self.function);
                Some(span)
            }
            None => None,
        };
        let trace = span.as_ref().and_then(|s| s.context().cloned()).or_else(|| data.trace_context().cloned());
        let deadline = data.deadline();
        async move {
            let outcome = self
                .remote
                .call(RemoteCall {
                    group: self.group.as_deref(),
                    interface: &self.interface,
                    function: &self.function,
                    params,
                    param_types: &self.params,
                    result_types: &self.results,
                    deadline,
                    trace: trace.as_ref(),
                })
                .await;
            if let (Some(span), Err(why)) = (&mut span, &outcome) {
                span.fail(why.clone());
            }
            let values = outcome.map_err(|why| self.failed(&why))?;
            if values.len() != self.results.len() {
                return Err(self.failed(&format!(
                    "{} results where the function has {}",
                    values.len(),
                    self.results.len()
                )));
            }
            Ok(values)
        }
    }

    fn failed(&self, why: &dyn std::fmt::Display) -> wasmtime::Error {
        wasmtime::format_err!("remote call of `{}#{}` failed: {why}", self.interface, self.function)
    }
}

fn define(
    instance: &mut wasmtime::component::LinkerInstance<'_, StoreState>,
    interface: &str,
    function: &str,
    func: &ComponentFunc,
    remote: &Arc<dyn RemoteLinks>,
    group: Option<&str>,
) -> wasmtime::Result<()> {
    let call = Arc::new(Remote {
        remote: remote.clone(),
        group: group.map(Into::into),
        interface: interface.into(),
        function: function.into(),
        params: func.params().map(|(_, t)| t).collect(),
        results: func.results().collect(),
    });
    if let Some(shape) = Shape::of(func) {
        if shape.takes_bytes() {
            return with_results!(shape.result, R, { define_bytes_param::<R>(instance, function, call) });
        }
        return with_shape!(shape, P, R, { define_typed::<P, R>(instance, function, call) });
    }
    instance.func_new_async(function, move |store, _ty, params, results| {
        let call = call.clone();
        Box::new(async move {
            let params: Vec<Arg> = params.iter().map(Arg::Val).collect();
            let values = call.run(store.data(), &params).await?;
            for (slot, value) in results.iter_mut().zip(values) {
                *slot = value.into_val();
            }
            Ok(())
        })
    })
}

/// A function of a typed [`Shape`]: its bytes are copied out of the caller's
/// memory once, not lifted a `Val` per byte.
fn define_typed<P: Values, R: Values>(
    instance: &mut wasmtime::component::LinkerInstance<'_, StoreState>,
    function: &str,
    call: Arc<Remote>,
) -> wasmtime::Result<()> {
    instance.func_wrap_async(function, move |store, params: P| {
        let call = call.clone();
        Box::new(async move {
            let params = params.into_values();
            let args: Vec<Arg> = params.iter().map(Value::as_arg).collect();
            let values = call.run(store.data(), &args).await?;
            R::from_values(values).ok_or_else(|| call.failed(&"results of the wrong types"))
        })
    })
}

/// A function of a typed [`Shape`] whose parameter is a `list<u8>`: its bytes are
/// encoded straight out of the caller's memory (which cannot change while the
/// call holds the store), not copied out first.
fn define_bytes_param<R: Values>(
    instance: &mut wasmtime::component::LinkerInstance<'_, StoreState>,
    function: &str,
    call: Arc<Remote>,
) -> wasmtime::Result<()> {
    instance.func_wrap_async(function, move |store, (bytes,): (WasmList<u8>,)| {
        let call = call.clone();
        Box::new(async move {
            let args = [Arg::Bytes(bytes.as_le_slice(&store))];
            let values = call.run(store.data(), &args).await?;
            R::from_values(values).ok_or_else(|| call.failed(&"results of the wrong types"))
        })
    })
}
