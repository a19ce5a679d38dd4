//! Remote links, the calling side: every function of the import is a host
//! function that hands the call, as [`Val`]s with their types, to the lattice
//! ([`RemoteLinks`]). A failed call traps the caller with a message naming the
//! interface, the function and the cause.

use std::sync::Arc;

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Linker, Val};

use crate::remote::{RemoteCall, RemoteLinks};
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
    instance.func_new_async(function, move |store, _ty, params, results| {
        let call = call.clone();
        Box::new(async move {
            let data = store.data();
            // Traced, the call is a client span of the caller's trace, the parent
            // of the serving host's invocation.
            let mut span = match data.trace_context() {
                Some(parent) => {
                    let name = format!("{}/{}", call.interface, call.function);
                    let mut span = data.telemetry().span(name, SpanKind::Client, Some(parent));
                    span.set("weft.link.mode", "remote");
                    span.set("rpc.system", "wrpc");
                    span.set("rpc.service", &*call.interface);
                    span.set("rpc.method", &*call.function);
                    Some(span)
                }
                None => None,
            };
            let trace = span.as_ref().and_then(|s| s.context().cloned()).or_else(|| data.trace_context().cloned());
            let outcome = call
                .remote
                .call(RemoteCall {
                    group: call.group.as_deref(),
                    interface: &call.interface,
                    function: &call.function,
                    params,
                    param_types: &call.params,
                    result_types: &call.results,
                    deadline: data.deadline(),
                    trace: trace.as_ref(),
                })
                .await;
            let failed = |why: &dyn std::fmt::Display| {
                wasmtime::format_err!("remote call of `{}#{}` failed: {why}", call.interface, call.function)
            };
            if let (Some(span), Err(why)) = (&mut span, &outcome) {
                span.fail(why.clone());
            }
            let values: Vec<Val> = outcome.map_err(|why| failed(&why))?;
            if values.len() != results.len() {
                return Err(failed(&format!("{} results where the function has {}", values.len(), results.len())));
            }
            results.clone_from_slice(&values);
            Ok(())
        })
    })
}
