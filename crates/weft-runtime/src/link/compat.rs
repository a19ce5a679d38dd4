//! Type compatibility of a link, checked at validation: the provider's export must
//! have, item for item, the types the caller's import expects. Semver-compatible
//! interface versions are allowed to link; whether they really line up is decided
//! here, by the types, and a mismatch is reported with the path to it.

use wasmtime::component::ResourceType;
use wasmtime::component::types::{Component, ComponentFunc, ComponentItem, Type};

use crate::interface::ItemName;

/// The two component types a link joins.
pub(crate) struct Sides<'a> {
    pub engine: &'a wasmtime::Engine,
    pub caller: &'a Component,
    pub provider: &'a Component,
}

impl Sides<'_> {
    /// `Ok` if `provided` can serve as `expected`; otherwise the first mismatch,
    /// as `function `x`: parameter `y`: expected string, found u32`.
    pub fn check(&self, expected: &ComponentItem, provided: &ComponentItem) -> Result<(), String> {
        match (expected, provided) {
            (ComponentItem::ComponentInstance(e), ComponentItem::ComponentInstance(p)) => {
                let provided: Vec<(&str, ComponentItem)> = p.exports(self.engine).map(|(n, i)| (n, i.ty)).collect();
                for (name, item) in e.exports(self.engine) {
                    let Some((_, found)) = provided.iter().find(|(n, _)| *n == name) else {
                        return Err(format!("`{name}` is missing"));
                    };
                    self.check(&item.ty, found).map_err(|m| format!("{} `{name}`: {m}", kind(&item.ty)))?;
                }
                Ok(())
            }
            (ComponentItem::ComponentFunc(e), ComponentItem::ComponentFunc(p)) => self.func(e, p),
            (ComponentItem::Resource(e), ComponentItem::Resource(p)) => self.resource(*e, *p),
            (ComponentItem::Type(e), ComponentItem::Type(p)) => self.ty(e, p),
            (e, p) => Err(format!("expected a {}, found a {}", kind(e), kind(p))),
        }
    }

    fn func(&self, e: &ComponentFunc, p: &ComponentFunc) -> Result<(), String> {
        match (e.async_(), p.async_()) {
            (true, false) => return Err("expected an `async func`, found a plain one".into()),
            (false, true) => return Err("expected a plain function, found an `async func`".into()),
            _ => {}
        }
        let (ep, pp): (Vec<_>, Vec<_>) = (e.params().collect(), p.params().collect());
        if ep.len() != pp.len() {
            return Err(format!("expected {} parameters, found {}", ep.len(), pp.len()));
        }
        for ((en, et), (pn, pt)) in ep.iter().zip(&pp) {
            if en != pn {
                return Err(format!("parameter `{en}` is called `{pn}`"));
            }
            self.ty(et, pt).map_err(|m| format!("parameter `{en}`: {m}"))?;
        }
        let (er, pr): (Vec<_>, Vec<_>) = (e.results().collect(), p.results().collect());
        match (er.as_slice(), pr.as_slice()) {
            ([], []) => Ok(()),
            ([e], [p]) => self.ty(e, p).map_err(|m| format!("result: {m}")),
            _ => Err(format!("expected {} results, found {}", er.len(), pr.len())),
        }
    }

    fn ty(&self, e: &Type, p: &Type) -> Result<(), String> {
        let mismatch = || Err(format!("expected {}, found {}", describe(e), describe(p)));
        match (e, p) {
            (Type::List(e), Type::List(p)) => self.ty(&e.ty(), &p.ty()).map_err(|m| format!("list element: {m}")),
            (Type::FixedLengthList(e), Type::FixedLengthList(p)) => {
                self.ty(&e.ty(), &p.ty()).map_err(|m| format!("list element: {m}"))
            }
            (Type::Map(e), Type::Map(p)) => {
                self.ty(&e.key(), &p.key()).map_err(|m| format!("map key: {m}"))?;
                self.ty(&e.value(), &p.value()).map_err(|m| format!("map value: {m}"))
            }
            (Type::Option(e), Type::Option(p)) => self.ty(&e.ty(), &p.ty()).map_err(|m| format!("option: {m}")),
            (Type::Result(e), Type::Result(p)) => {
                self.optional(e.ok(), p.ok()).map_err(|m| format!("result ok: {m}"))?;
                self.optional(e.err(), p.err()).map_err(|m| format!("result error: {m}"))
            }
            (Type::Tuple(e), Type::Tuple(p)) => {
                let (et, pt): (Vec<_>, Vec<_>) = (e.types().collect(), p.types().collect());
                if et.len() != pt.len() {
                    return mismatch();
                }
                et.iter()
                    .zip(&pt)
                    .enumerate()
                    .try_for_each(|(i, (e, p))| self.ty(e, p).map_err(|m| format!("tuple element {i}: {m}")))
            }
            (Type::Record(e), Type::Record(p)) => {
                let (ef, pf): (Vec<_>, Vec<_>) = (e.fields().collect(), p.fields().collect());
                if ef.len() != pf.len() || ef.iter().zip(&pf).any(|(e, p)| e.name != p.name) {
                    return Err(format!(
                        "expected record {{ {} }}, found record {{ {} }}",
                        names(ef.iter().map(|f| f.name)),
                        names(pf.iter().map(|f| f.name))
                    ));
                }
                ef.iter()
                    .zip(&pf)
                    .try_for_each(|(e, p)| self.ty(&e.ty, &p.ty).map_err(|m| format!("field `{}`: {m}", e.name)))
            }
            (Type::Variant(e), Type::Variant(p)) => {
                let (ec, pc): (Vec<_>, Vec<_>) = (e.cases().collect(), p.cases().collect());
                if ec.len() != pc.len() || ec.iter().zip(&pc).any(|(e, p)| e.name != p.name) {
                    return Err(format!(
                        "expected variant {{ {} }}, found variant {{ {} }}",
                        names(ec.iter().map(|c| c.name)),
                        names(pc.iter().map(|c| c.name))
                    ));
                }
                ec.into_iter().zip(pc).try_for_each(|(e, p)| {
                    let name = e.name;
                    self.optional(e.ty, p.ty).map_err(|m| format!("case `{name}`: {m}"))
                })
            }
            (Type::Enum(e), Type::Enum(p)) => {
                if e.names().ne(p.names()) {
                    return Err(format!(
                        "expected enum {{ {} }}, found enum {{ {} }}",
                        names(e.names()),
                        names(p.names())
                    ));
                }
                Ok(())
            }
            (Type::Flags(e), Type::Flags(p)) => {
                if e.names().ne(p.names()) {
                    return Err(format!(
                        "expected flags {{ {} }}, found flags {{ {} }}",
                        names(e.names()),
                        names(p.names())
                    ));
                }
                Ok(())
            }
            (Type::Own(e), Type::Own(p)) | (Type::Borrow(e), Type::Borrow(p)) => self.resource(*e, *p),
            (Type::Future(e), Type::Future(p)) => self.optional(e.ty(), p.ty()).map_err(|m| format!("future: {m}")),
            (Type::Stream(e), Type::Stream(p)) => self.optional(e.ty(), p.ty()).map_err(|m| format!("stream: {m}")),
            (e, p) if std::mem::discriminant(e) == std::mem::discriminant(p) => Ok(()),
            _ => mismatch(),
        }
    }

    fn optional(&self, e: Option<Type>, p: Option<Type>) -> Result<(), String> {
        match (e, p) {
            (None, None) => Ok(()),
            (Some(e), Some(p)) => self.ty(&e, &p),
            (Some(e), None) => Err(format!("expected {}, found no payload", describe(&e))),
            (None, Some(p)) => Err(format!("expected no payload, found {}", describe(&p))),
        }
    }

    /// Resources match when both sides name the same resource of the same interface.
    fn resource(&self, e: ResourceType, p: ResourceType) -> Result<(), String> {
        let (eo, po) = (origin(self.engine, self.caller, e), origin(self.engine, self.provider, p));
        match (&eo, &po) {
            (Some(eo), Some(po)) if eo == po => Ok(()),
            _ => Err(format!("expected resource {}, found resource {}", show(&eo), show(&po))),
        }
    }
}

/// `(interface without version, resource name)` of the first import or export of
/// `component` that holds the resource type `ty`.
fn origin(engine: &wasmtime::Engine, component: &Component, ty: ResourceType) -> Option<(String, String)> {
    let find = |name: &str, item: ComponentItem| -> Option<(String, String)> {
        let ComponentItem::ComponentInstance(instance) = item else { return None };
        let (resource, _) =
            instance.exports(engine).find(|(_, i)| matches!(i.ty, ComponentItem::Resource(r) if r == ty))?;
        let interface = match ItemName::parse(name) {
            ItemName::Interface(i) => i.unversioned(),
            ItemName::Plain(p) => p,
        };
        Some((interface, resource.to_string()))
    };
    component
        .imports(engine)
        .find_map(|(name, item)| find(name, item.ty))
        .or_else(|| component.exports(engine).find_map(|(name, item)| find(name, item.ty)))
}

fn show(origin: &Option<(String, String)>) -> String {
    match origin {
        Some((interface, name)) => format!("`{name}` of `{interface}`"),
        None => "of unknown origin".into(),
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Resource(_) => "resource",
        ComponentItem::Type(_) => "type",
        ComponentItem::Component(_) => "component",
        ComponentItem::Module(_) | ComponentItem::CoreFunc(_) => "core item",
    }
}

fn describe(ty: &Type) -> String {
    crate::world::render(ty, &|_| None)
}
