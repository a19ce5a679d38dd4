//! What a component imports and exports, described for people (`weft inspect`) in
//! WIT-like syntax, from Wasmtime's view of its types.

use std::fmt::Write as _;

use serde::Serialize;
use wasmtime::component::ResourceType;
use wasmtime::component::types::{Component, ComponentFunc, ComponentItem, Type};

#[derive(Debug, Clone, Serialize)]
pub struct World {
    pub imports: Vec<WorldItem>,
    pub exports: Vec<WorldItem>,
}

/// An import or export: an interface (with members), a function, or a resource.
#[derive(Debug, Clone, Serialize)]
pub struct WorldItem {
    pub name: String,
    pub kind: &'static str,
    /// For functions: `func(a: u32) -> string`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<WorldItem>,
}

impl World {
    pub fn of(engine: &wasmtime::Engine, component: &Component) -> World {
        let names = ResourceNames::of(engine, component);
        let item = |name: &str, item: ComponentItem| describe(engine, &names, name, &item);
        World {
            imports: component.imports(engine).map(|(n, i)| item(n, i.ty)).collect(),
            exports: component.exports(engine).map(|(n, i)| item(n, i.ty)).collect(),
        }
    }

    /// WIT-like text: `world { import …; export …; }`.
    pub fn to_wit(&self, name: &str) -> String {
        let mut out = format!("world {name} {{\n");
        for (keyword, items) in [("import", &self.imports), ("export", &self.exports)] {
            for item in items {
                match item.kind {
                    "interface" => {
                        let _ = writeln!(out, "  {keyword} {}: interface {{", item.name);
                        for m in &item.members {
                            let _ = writeln!(out, "    {};", member(m));
                        }
                        out.push_str("  }\n");
                    }
                    _ => {
                        let _ = writeln!(out, "  {keyword} {};", member(item));
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

fn member(item: &WorldItem) -> String {
    match &item.signature {
        Some(signature) => format!("{}: {signature}", item.name),
        None => format!("{} {}", item.kind, item.name),
    }
}

fn describe(engine: &wasmtime::Engine, names: &ResourceNames, name: &str, item: &ComponentItem) -> WorldItem {
    let plain = |kind, signature| WorldItem { name: name.to_string(), kind, signature, members: Vec::new() };
    match item {
        ComponentItem::ComponentInstance(instance) => WorldItem {
            name: name.to_string(),
            kind: "interface",
            signature: None,
            members: instance.exports(engine).map(|(n, i)| describe(engine, names, n, &i.ty)).collect(),
        },
        ComponentItem::ComponentFunc(func) => plain("function", Some(signature(func, &|r| names.get(r)))),
        ComponentItem::Resource(_) => plain("resource", None),
        ComponentItem::Type(ty) => plain("type", Some(render(ty, &|r| names.get(r)))),
        ComponentItem::Component(_) => plain("component", None),
        ComponentItem::Module(_) => plain("module", None),
        ComponentItem::CoreFunc(_) => plain("core function", None),
    }
}

/// The names a component gives its resource types.
struct ResourceNames(Vec<(ResourceType, String)>);

impl ResourceNames {
    fn of(engine: &wasmtime::Engine, component: &Component) -> ResourceNames {
        let mut names = Vec::new();
        let items = component.imports(engine).chain(component.exports(engine));
        for (_, item) in items {
            if let ComponentItem::ComponentInstance(instance) = item.ty {
                for (name, item) in instance.exports(engine) {
                    if let ComponentItem::Resource(ty) = item.ty
                        && !names.iter().any(|(t, _)| *t == ty)
                    {
                        names.push((ty, name.to_string()));
                    }
                }
            }
        }
        ResourceNames(names)
    }

    fn get(&self, ty: ResourceType) -> Option<String> {
        self.0.iter().find(|(t, _)| *t == ty).map(|(_, n)| n.clone())
    }
}

/// `func(a: u32, b: string) -> list<u8>`; `async func(…)` for a
/// component-model async function.
pub fn signature(func: &ComponentFunc, resource: &dyn Fn(ResourceType) -> Option<String>) -> String {
    let params: Vec<String> = func.params().map(|(n, t)| format!("{n}: {}", render(&t, resource))).collect();
    let results: Vec<String> = func.results().map(|t| render(&t, resource)).collect();
    let kind = if func.async_() { "async func" } else { "func" };
    match results.as_slice() {
        [] => format!("{kind}({})", params.join(", ")),
        [one] => format!("{kind}({}) -> {one}", params.join(", ")),
        many => format!("{kind}({}) -> ({})", params.join(", "), many.join(", ")),
    }
}

/// A type in WIT syntax; records, variants, enums and flags are written out
/// structurally (Wasmtime does not keep their names).
pub fn render(ty: &Type, resource: &dyn Fn(ResourceType) -> Option<String>) -> String {
    let r = |t: &Type| render(t, resource);
    let handle = |ty: &ResourceType| resource(*ty).unwrap_or_else(|| "resource".into());
    let list = |items: Vec<String>| items.join(", ");
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", r(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, _>", r(&l.ty())),
        Type::Map(m) => format!("map<{}, {}>", r(&m.key()), r(&m.value())),
        Type::Record(rec) => {
            format!("record {{ {} }}", list(rec.fields().map(|f| format!("{}: {}", f.name, r(&f.ty))).collect()))
        }
        Type::Tuple(t) => format!("tuple<{}>", list(t.types().map(|t| r(&t)).collect())),
        Type::Variant(v) => format!(
            "variant {{ {} }}",
            list(
                v.cases()
                    .map(|c| match &c.ty {
                        Some(t) => format!("{}({})", c.name, r(t)),
                        None => c.name.to_string(),
                    })
                    .collect()
            )
        ),
        Type::Enum(e) => format!("enum {{ {} }}", list(e.names().map(String::from).collect())),
        Type::Option(o) => format!("option<{}>", r(&o.ty())),
        Type::Result(res) => match (res.ok(), res.err()) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", r(&ok)),
            (None, Some(err)) => format!("result<_, {}>", r(&err)),
            (Some(ok), Some(err)) => format!("result<{}, {}>", r(&ok), r(&err)),
        },
        Type::Flags(f) => format!("flags {{ {} }}", list(f.names().map(String::from).collect())),
        Type::Own(t) => handle(t),
        Type::Borrow(t) => format!("borrow<{}>", handle(t)),
        Type::Future(f) => f.ty().map_or("future".into(), |t| format!("future<{}>", r(&t))),
        Type::Stream(s) => s.ty().map_or("stream".into(), |t| format!("stream<{}>", r(&t))),
        Type::ErrorContext => "error-context".into(),
    }
}
