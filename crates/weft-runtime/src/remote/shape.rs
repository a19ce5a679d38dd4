//! The values of a remote call, and the shapes of function whose `list<u8>`
//! values cross as bytes. Wasmtime hands a dynamically typed host function a
//! `Val` per byte of a list, and a dynamically typed call takes one: at 64 KiB
//! that is most of a call's cost. A function of one parameter and at most one
//! result, each `list<u8>`, `string`, `u32`, `u64` or `bool` and one of them
//! `list<u8>` (`put(bytes)`, `get(key) -> bytes`, `length(bytes) -> u32`), is
//! linked and called through Wasmtime's typed functions instead: the bytes are
//! copied once, out of one linear memory, and once into the other. A remote
//! call's `list<u8>` parameter is encoded straight from the caller's memory, and
//! lowered into the provider's straight from the message that carried it.

use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::{ComponentNamedList, ComponentType, Lift, Lower, Val};

use crate::workload::Invocation;

/// A value of a remote call: a Wasmtime value, or the bytes of a `list<u8>`.
#[derive(Debug)]
pub enum Value {
    Val(Val),
    Bytes(Vec<u8>),
}

/// A borrowed [`Value`].
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Val(&'a Val),
    Bytes(&'a [u8]),
}

impl Value {
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            Value::Val(v) => Arg::Val(v),
            Value::Bytes(b) => Arg::Bytes(b),
        }
    }

    /// As a Wasmtime value (bytes become a list of `u8`s).
    pub fn into_val(self) -> Val {
        match self {
            Value::Val(v) => v,
            Value::Bytes(b) => Val::List(b.into_iter().map(Val::U8).collect()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bytes,
    Str,
    U32,
    U64,
    Bool,
}

fn kind(ty: &Type) -> Option<Kind> {
    match ty {
        Type::List(list) if matches!(list.ty(), Type::U8) => Some(Kind::Bytes),
        Type::String => Some(Kind::Str),
        Type::U32 => Some(Kind::U32),
        Type::U64 => Some(Kind::U64),
        Type::Bool => Some(Kind::Bool),
        _ => None,
    }
}

/// A function that crosses through typed functions (see the module's docs).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub(crate) param: Kind,
    pub(crate) result: Option<Kind>,
}

impl Shape {
    /// `func`'s shape, if it is one that crosses typed.
    pub fn of(func: &ComponentFunc) -> Option<Shape> {
        let params: Vec<Type> = func.params().map(|(_, t)| t).collect();
        let results: Vec<Type> = func.results().collect();
        let ([param], results) = (&params[..], &results[..]) else { return None };
        let result = match results {
            [] => None,
            [result] => Some(kind(result)?),
            _ => return None,
        };
        let shape = Shape { param: kind(param)?, result };
        (shape.takes_bytes() || shape.result == Some(Kind::Bytes)).then_some(shape)
    }

    /// Whether the function's parameter is a `list<u8>`, which a serving host can
    /// pass on from the message it came in ([`Invocation::call_with_bytes`]).
    pub fn takes_bytes(&self) -> bool {
        self.param == Kind::Bytes
    }
}

/// A parameter or result type of a typed shape.
pub(crate) trait Slot: ComponentType + Lift + Lower + Send + Sync + 'static {
    fn into_value(self) -> Value;
    fn from_value(value: Value) -> Option<Self>;
}

impl Slot for Vec<u8> {
    fn into_value(self) -> Value {
        Value::Bytes(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b),
            Value::Val(Val::List(items)) => {
                items.into_iter().map(|v| if let Val::U8(b) = v { Some(b) } else { None }).collect()
            }
            Value::Val(_) => None,
        }
    }
}

macro_rules! scalar_slots {
    ($($t:ty => $variant:ident),*) => {$(
        impl Slot for $t {
            fn into_value(self) -> Value {
                Value::Val(Val::$variant(self))
            }

            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::Val(Val::$variant(v)) => Some(v),
                    _ => None,
                }
            }
        }
    )*};
}

scalar_slots!(String => String, u32 => U32, u64 => U64, bool => Bool);

/// The parameters or results of a typed shape.
pub(crate) trait Values: ComponentNamedList + Lift + Lower + Send + Sync + 'static {
    fn into_values(self) -> Vec<Value>;
    fn from_values(values: Vec<Value>) -> Option<Self>;
}

impl Values for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }

    fn from_values(values: Vec<Value>) -> Option<Self> {
        values.is_empty().then_some(())
    }
}

impl<A: Slot> Values for (A,) {
    fn into_values(self) -> Vec<Value> {
        vec![self.0.into_value()]
    }

    fn from_values(values: Vec<Value>) -> Option<Self> {
        let [value] = <[Value; 1]>::try_from(values).ok()?;
        Some((A::from_value(value)?,))
    }
}

/// Runs `$body` with `$R` the Rust type of a shape's results, `$result` (an
/// `Option<Kind>`).
macro_rules! with_results {
    ($result:expr, $R:ident, $body:block) => {
        $crate::remote::shape::with_results!(@kinds $result, $R, $body, [Bytes Vec<u8>] [Str String] [U32 u32] [U64 u64] [Bool bool])
    };
    (@kinds $result:expr, $R:ident, $body:block, $([$kind:ident $t:ty])*) => {{
        use $crate::remote::shape::Kind;
        match $result {
            None => { type $R = (); $body }
            $(Some(Kind::$kind) => { type $R = ($t,); $body })*
        }
    }};
}
pub(crate) use with_results;

/// Runs `$body` with `$P` and `$R` the Rust types of `$shape`'s parameters and results.
macro_rules! with_shape {
    ($shape:expr, $P:ident, $R:ident, $body:block) => {
        with_shape!(@kinds $shape, $P, $R, $body, [Bytes Vec<u8>] [Str String] [U32 u32] [U64 u64] [Bool bool])
    };
    (@kinds $shape:expr, $P:ident, $R:ident, $body:block, $([$kind:ident $t:ty])*) => {{
        use $crate::remote::shape::Kind;
        match $shape.param {
            $(Kind::$kind => { type $P = ($t,); $crate::remote::shape::with_results!($shape.result, $R, $body) })*
        }
    }};
}
pub(crate) use with_shape;

impl Invocation {
    /// Calls `function` with values of a remote call: through a typed function
    /// when it has a [`Shape`], else as Wasmtime values.
    pub async fn call_values(
        &mut self,
        function: &str,
        shape: Option<Shape>,
        params: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        let Some(shape) = shape else {
            let params: Vec<Val> = params.into_iter().map(Value::into_val).collect();
            let results = self.call(function, &params).await.map_err(|e| e.to_string())?;
            return Ok(results.into_iter().map(Value::Val).collect());
        };
        with_shape!(shape, P, R, {
            let func = self.typed_func::<P, R>(function).map_err(|e| e.to_string())?;
            let params = P::from_values(params).ok_or("parameters of the wrong types")?;
            let results: Result<R, _> = self.call_typed(&func, params).await;
            Ok(results.map_err(|e| e.to_string())?.into_values())
        })
    }

    /// Calls `function`, of a shape that [takes bytes](Shape::takes_bytes), with
    /// `bytes` as they are: copied once, into the instance's memory.
    pub async fn call_with_bytes(&mut self, function: &str, shape: Shape, bytes: &[u8]) -> Result<Vec<Value>, String> {
        if !shape.takes_bytes() {
            return Err(format!("`{function}` does not take bytes"));
        }
        with_results!(shape.result, R, {
            let func = self.typed_func::<(&[u8],), R>(function).map_err(|e| e.to_string())?;
            let results: Result<R, _> = self.call_typed(&func, (bytes,)).await;
            Ok(results.map_err(|e| e.to_string())?.into_values())
        })
    }
}
