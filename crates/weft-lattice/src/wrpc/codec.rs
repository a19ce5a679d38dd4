//! wRPC's value encoding (the component model's value definition encoding, as
//! `wrpc-transport` 0.29 writes it) between Wasmtime's [`Val`]s and bytes, driven
//! by the values' [`Type`]s:
//!
//! * `bool`: one byte, 0 or 1; `u8`/`s8`: one byte; other integers LEB128
//!   (signed ones sign-extended, not zigzag); floats 4 or 8 bytes little endian,
//!   NaN written canonical;
//! * `char`: its UTF-8 bytes; `string`: LEB128 byte length, then UTF-8;
//!   `list<T>`: LEB128 element count, then the elements;
//! * tuples and records: their members in order, nothing around them;
//! * variants and enums: the case index as LEB128, then the payload if any;
//!   `option`/`result`: a 0/1 byte, then the payload if any;
//! * `flags`: a bit per flag, little endian, ⌈n/8⌉ bytes.
//!
//! A function's parameters (and its results) are one tuple. Resources, streams,
//! futures, maps and fixed-length lists do not cross ([`check`] says so at
//! validation). Decoding takes untrusted bytes: every length is checked against
//! what is left before anything is allocated, and a value holds at most
//! [`MAX_VALUES`] values more than its bytes could (zero-sized elements).

use std::fmt;

use wasmtime::component::{Type, Val};
use weft_runtime::remote::{Arg, Value};

/// Values a decoded message may hold beyond one per byte it has: elements that
/// take no bytes (`list<tuple<>>`) cost nothing else.
pub const MAX_VALUES: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

/// What a decoder says of bytes that stop inside a value: more may follow.
const INCOMPLETE: &str = "the bytes end inside a value";

impl CodecError {
    /// Whether the bytes were fine as far as they went (a prefix of a message).
    pub fn is_incomplete(&self) -> bool {
        self.0.starts_with(INCOMPLETE)
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

fn error<T>(message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(message.into()))
}

/// Why values of `ty` cannot cross a remote link, if they cannot.
pub fn check(ty: &Type) -> Result<(), String> {
    match ty {
        Type::List(l) => check(&l.ty()),
        Type::Record(r) => r.fields().try_for_each(|f| check(&f.ty)),
        Type::Tuple(t) => t.types().try_for_each(|t| check(&t)),
        Type::Variant(v) => v.cases().filter_map(|c| c.ty).try_for_each(|t| check(&t)),
        Type::Option(o) => check(&o.ty()),
        Type::Result(r) => r.ok().into_iter().chain(r.err()).try_for_each(|t| check(&t)),
        Type::Own(_) | Type::Borrow(_) => {
            Err("resources cannot cross a remote link (their handles would name another host's instances)".into())
        }
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err("futures, streams and error contexts (WASI 0.3 async) cannot cross a remote link yet".into())
        }
        Type::Map(_) | Type::FixedLengthList(_) => Err("maps and fixed-length lists have no wRPC encoding".into()),
        _ => Ok(()),
    }
}

/// Appends `values`, one of each of `types`, as a tuple.
fn encode_tuple(
    values: &[Val],
    types: impl ExactSizeIterator<Item = Type>,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if values.len() != types.len() {
        return error(format!("{} values for {} types", values.len(), types.len()));
    }
    for (value, ty) in values.iter().zip(types) {
        encode(value, &ty, out)?;
    }
    Ok(())
}

/// Appends a function's parameters (or results), one of each of `types`; bytes
/// are a `list<u8>`.
pub fn encode_call(
    values: &[Arg<'_>],
    types: impl ExactSizeIterator<Item = Type>,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if values.len() != types.len() {
        return error(format!("{} values for {} types", values.len(), types.len()));
    }
    for (value, ty) in values.iter().zip(types) {
        match value {
            Arg::Val(v) => encode(v, &ty, out)?,
            Arg::Bytes(b) if matches!(&ty, Type::List(l) if matches!(l.ty(), Type::U8)) => {
                length(b.len(), out)?;
                out.extend_from_slice(b);
            }
            Arg::Bytes(_) => return error(format!("bytes where the function has a {ty:?}")),
        }
    }
    Ok(())
}

/// Reads a function's parameters (or results), a tuple of `types` that is the
/// whole of `bytes`; each `list<u8>` comes out as its bytes.
pub fn decode_call(bytes: &[u8], types: impl Iterator<Item = Type>) -> Result<Vec<Value>, CodecError> {
    let mut reader = Reader { input: bytes, budget: bytes.len().saturating_add(MAX_VALUES) };
    let values = types
        .map(|ty| match &ty {
            Type::List(l) if matches!(l.ty(), Type::U8) => Ok(Value::Bytes(reader.byte_list()?.to_vec())),
            _ => reader.value(&ty).map(Value::Val),
        })
        .collect::<Result<Vec<_>, _>>()?;
    reader.end()?;
    Ok(values)
}

/// Where, in the parameters of a function whose one parameter is a `list<u8>`,
/// its bytes are: read in place, not copied.
pub fn decode_bytes_param(bytes: &[u8]) -> Result<std::ops::Range<usize>, CodecError> {
    let mut reader = Reader { input: bytes, budget: MAX_VALUES };
    let list = reader.byte_list()?;
    reader.end()?;
    // Nothing follows it: the list ends where the message does.
    Ok(bytes.len() - list.len()..bytes.len())
}

/// Appends a `u64` and a `string`, in the value encoding.
pub fn encode_u64_string(n: u64, text: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    unsigned(n, out);
    length(text.len(), out)?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Reads a `u64` and a `string` at the start of `bytes`, borrowed; and how many
/// bytes they took.
pub fn decode_u64_string(bytes: &[u8]) -> Result<(u64, &str, usize), CodecError> {
    let mut reader = Reader { input: bytes, budget: 2 };
    let n = reader.unsigned(64)?;
    let text = reader.text()?;
    Ok((n, text, bytes.len() - reader.input.len()))
}

fn unsigned(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn signed(mut n: i64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        let done = (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn length(n: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match u32::try_from(n) {
        Ok(n) => {
            unsigned(n.into(), out);
            Ok(())
        }
        Err(_) => error(format!("a length of {n} does not fit the encoding's 32 bits")),
    }
}

/// Appends `value`, which must be of type `ty`.
pub fn encode(value: &Val, ty: &Type, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mismatch = || CodecError(format!("a value {value:?} where the type is {ty:?}"));
    match (value, ty) {
        (Val::Bool(b), Type::Bool) => out.push(u8::from(*b)),
        (Val::U8(n), Type::U8) => out.push(*n),
        (Val::S8(n), Type::S8) => out.push(*n as u8),
        (Val::U16(n), Type::U16) => unsigned((*n).into(), out),
        (Val::U32(n), Type::U32) => unsigned((*n).into(), out),
        (Val::U64(n), Type::U64) => unsigned(*n, out),
        (Val::S16(n), Type::S16) => signed((*n).into(), out),
        (Val::S32(n), Type::S32) => signed((*n).into(), out),
        (Val::S64(n), Type::S64) => signed(*n, out),
        (Val::Float32(f), Type::Float32) => {
            let f = if f.is_nan() { f32::NAN } else { *f };
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Val::Float64(f), Type::Float64) => {
            let f = if f.is_nan() { f64::NAN } else { *f };
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Val::Char(c), Type::Char) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        (Val::String(s), Type::String) => {
            length(s.len(), out)?;
            out.extend_from_slice(s.as_bytes());
        }
        (Val::List(items), Type::List(list)) => {
            length(items.len(), out)?;
            let element = list.ty();
            if let Type::U8 = element {
                // The common case, bytes, without a walk per element.
                for item in items {
                    let Val::U8(b) = item else { return Err(mismatch()) };
                    out.push(*b);
                }
            } else {
                for item in items {
                    encode(item, &element, out)?;
                }
            }
        }
        (Val::Record(fields), Type::Record(record)) => {
            if fields.len() != record.fields().len() {
                return Err(mismatch());
            }
            for ((name, value), field) in fields.iter().zip(record.fields()) {
                if name != field.name {
                    return Err(mismatch());
                }
                encode(value, &field.ty, out)?;
            }
        }
        (Val::Tuple(values), Type::Tuple(tuple)) => encode_tuple(values, tuple.types(), out)?,
        (Val::Variant(name, payload), Type::Variant(variant)) => {
            let (index, case) = variant.cases().enumerate().find(|(_, c)| c.name == name).ok_or_else(mismatch)?;
            unsigned(index as u64, out);
            match (payload, case.ty) {
                (Some(payload), Some(ty)) => encode(payload, &ty, out)?,
                (None, None) => {}
                _ => return Err(mismatch()),
            }
        }
        (Val::Enum(name), Type::Enum(cases)) => {
            let index = cases.names().position(|n| n == name).ok_or_else(mismatch)?;
            unsigned(index as u64, out);
        }
        (Val::Option(value), Type::Option(option)) => match value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                encode(value, &option.ty(), out)?;
            }
        },
        (Val::Result(value), Type::Result(result)) => {
            let (status, payload, ty) = match value {
                Ok(payload) => (0, payload, result.ok()),
                Err(payload) => (1, payload, result.err()),
            };
            out.push(status);
            match (payload, ty) {
                (Some(payload), Some(ty)) => encode(payload, &ty, out)?,
                (None, None) => {}
                _ => return Err(mismatch()),
            }
        }
        (Val::Flags(set), Type::Flags(flags)) => {
            let names: Vec<&str> = flags.names().collect();
            let mut bytes = vec![0u8; names.len().div_ceil(8)];
            for name in set {
                let bit = names.iter().position(|n| n == name).ok_or_else(mismatch)?;
                bytes[bit / 8] |= 1 << (bit % 8);
            }
            out.extend_from_slice(&bytes);
        }
        _ => {
            return match check(ty) {
                Err(why) => error(why),
                Ok(()) => Err(mismatch()),
            };
        }
    }
    Ok(())
}

/// Untrusted bytes, read value by value.
struct Reader<'a> {
    input: &'a [u8],
    /// Values this message may still hold.
    budget: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&first, rest) = self.input.split_first().ok_or_else(|| CodecError(INCOMPLETE.into()))?;
        self.input = rest;
        Ok(first)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.input.len() {
            return error(format!("{INCOMPLETE}: {n} bytes announced, {} left", self.input.len()));
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    /// An unsigned LEB128 of at most `bits` bits (and ⌈bits/7⌉ bytes).
    fn unsigned(&mut self, bits: u32) -> Result<u64, CodecError> {
        let mut value = 0u128;
        for i in 0..bits.div_ceil(7) {
            let byte = self.byte()?;
            value |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return match value >> bits {
                    0 => Ok(value as u64),
                    _ => error(format!("an integer wider than {bits} bits")),
                };
            }
        }
        error(format!("an integer longer than a {bits}-bit one can be"))
    }

    /// A signed LEB128 of at most `bits` bits (and ⌈bits/7⌉ bytes).
    fn signed(&mut self, bits: u32) -> Result<i64, CodecError> {
        let mut value = 0i128;
        for i in 0..bits.div_ceil(7) {
            let byte = self.byte()?;
            value |= i128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte & 0x40 != 0 {
                    value |= -1i128 << (7 * (i + 1));
                }
                let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
                return match (min..=max).contains(&value) {
                    true => Ok(value as i64),
                    false => error(format!("an integer wider than {bits} bits")),
                };
            }
        }
        error(format!("an integer longer than a {bits}-bit one can be"))
    }

    fn length(&mut self) -> Result<usize, CodecError> {
        Ok(self.unsigned(32)? as usize)
    }

    /// A `list<u8>`: its length, then its bytes, as they stand in the input.
    fn byte_list(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.length()?;
        self.bytes(n)
    }

    /// A `string`, as it stands in the input.
    fn text(&mut self) -> Result<&'a str, CodecError> {
        let bytes = self.byte_list()?;
        std::str::from_utf8(bytes).map_err(|e| CodecError(format!("a string that is not UTF-8: {e}")))
    }

    /// Nothing may follow the last value.
    fn end(&self) -> Result<(), CodecError> {
        match self.input.len() {
            0 => Ok(()),
            left => error(format!("{left} bytes after the last value")),
        }
    }

    fn value(&mut self, ty: &Type) -> Result<Val, CodecError> {
        if self.budget == 0 {
            return error(format!("more values than a message of this size may hold ({MAX_VALUES} past its bytes)"));
        }
        self.budget -= 1;
        Ok(match ty {
            Type::Bool => match self.byte()? {
                0 => Val::Bool(false),
                1 => Val::Bool(true),
                b => return error(format!("{b} is not a bool")),
            },
            Type::U8 => Val::U8(self.byte()?),
            Type::S8 => Val::S8(self.byte()? as i8),
            Type::U16 => Val::U16(self.unsigned(16)? as u16),
            Type::U32 => Val::U32(self.unsigned(32)? as u32),
            Type::U64 => Val::U64(self.unsigned(64)?),
            Type::S16 => Val::S16(self.signed(16)? as i16),
            Type::S32 => Val::S32(self.signed(32)? as i32),
            Type::S64 => Val::S64(self.signed(64)?),
            Type::Float32 => Val::Float32(f32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes"))),
            Type::Float64 => Val::Float64(f64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes"))),
            Type::Char => {
                let first = *self.input.first().ok_or_else(|| CodecError(INCOMPLETE.into()))?;
                let width = match first {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf7 => 4,
                    _ => return error("a char that is not UTF-8"),
                };
                let bytes = self.bytes(width)?;
                let text = std::str::from_utf8(bytes).map_err(|_| CodecError("a char that is not UTF-8".into()))?;
                Val::Char(text.chars().next().expect("one char"))
            }
            Type::String => Val::String(self.text()?.to_string()),
            Type::List(list) => {
                let n = self.length()?;
                let element = list.ty();
                if let Type::U8 = element {
                    Val::List(self.bytes(n)?.iter().map(|b| Val::U8(*b)).collect())
                } else {
                    // Every element costs a value; the budget bounds the vector.
                    if n > self.budget {
                        return error(format!("a list of {n} elements, more than this message may hold"));
                    }
                    let mut items = Vec::with_capacity(n.min(self.input.len().max(16)));
                    for _ in 0..n {
                        items.push(self.value(&element)?);
                    }
                    Val::List(items)
                }
            }
            Type::Record(record) => {
                Val::Record(record.fields().map(|f| Ok((f.name.to_string(), self.value(&f.ty)?))).collect::<Result<
                    _,
                    CodecError,
                >>(
                )?)
            }
            Type::Tuple(tuple) => Val::Tuple(tuple.types().map(|t| self.value(&t)).collect::<Result<_, _>>()?),
            Type::Variant(variant) => {
                let index = self.unsigned(32)? as usize;
                let case = variant.cases().nth(index).ok_or_else(|| {
                    CodecError(format!("case {index} of a variant of {} cases", variant.cases().len()))
                })?;
                let payload = match case.ty {
                    Some(ty) => Some(Box::new(self.value(&ty)?)),
                    None => None,
                };
                Val::Variant(case.name.to_string(), payload)
            }
            Type::Enum(cases) => {
                let index = self.unsigned(32)? as usize;
                let name = cases
                    .names()
                    .nth(index)
                    .ok_or_else(|| CodecError(format!("case {index} of an enum of {} cases", cases.names().len())))?;
                Val::Enum(name.to_string())
            }
            Type::Option(option) => match self.byte()? {
                0 => Val::Option(None),
                1 => Val::Option(Some(Box::new(self.value(&option.ty())?))),
                b => return error(format!("{b} is not an option's status")),
            },
            Type::Result(result) => {
                let (ok, ty) = match self.byte()? {
                    0 => (true, result.ok()),
                    1 => (false, result.err()),
                    b => return error(format!("{b} is not a result's status")),
                };
                let payload = match ty {
                    Some(ty) => Some(Box::new(self.value(&ty)?)),
                    None => None,
                };
                Val::Result(if ok { Ok(payload) } else { Err(payload) })
            }
            Type::Flags(flags) => {
                let names: Vec<&str> = flags.names().collect();
                let bytes = self.bytes(names.len().div_ceil(8))?;
                let mut set = Vec::new();
                for (bit, name) in names.iter().enumerate() {
                    if bytes[bit / 8] & (1 << (bit % 8)) != 0 {
                        set.push(name.to_string());
                    }
                }
                if (names.len()..bytes.len() * 8).any(|bit| bytes[bit / 8] & (1 << (bit % 8)) != 0) {
                    return error(format!("flags with a bit set past the {} flags", names.len()));
                }
                Val::Flags(set)
            }
            other => return error(check(other).err().unwrap_or_else(|| format!("no encoding for {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_tuple(bytes: &[u8], types: impl Iterator<Item = Type>) -> Result<Vec<Val>, CodecError> {
        Ok(decode_call(bytes, types)?.into_iter().map(Value::into_val).collect())
    }

    fn leb(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        unsigned(n, &mut out);
        out
    }

    fn sleb(n: i64) -> Vec<u8> {
        let mut out = Vec::new();
        signed(n, &mut out);
        out
    }

    #[test]
    fn leb128_is_the_specifications() {
        assert_eq!(leb(0), [0]);
        assert_eq!(leb(300), [0xac, 0x02]);
        assert_eq!(leb(u64::MAX).len(), 10);
        assert_eq!(sleb(-1), [0x7f]);
        assert_eq!(sleb(-200), [0xb8, 0x7e]);
        assert_eq!(sleb(63), [0x3f]);
        assert_eq!(sleb(64), [0xc0, 0x00]);
        for n in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let bytes = leb(n);
            assert_eq!(Reader { input: &bytes, budget: 1 }.unsigned(64), Ok(n));
        }
        for n in [0, -1, -64, -65, 63, 64, i32::MIN as i64, i64::MIN, i64::MAX] {
            let bytes = sleb(n);
            assert_eq!(Reader { input: &bytes, budget: 1 }.signed(64), Ok(n), "{n}");
        }
    }

    #[test]
    fn integers_out_of_their_width_are_refused() {
        let big = leb(u32::MAX as u64 + 1);
        assert!(Reader { input: &big, budget: 1 }.unsigned(32).is_err());
        let big = leb(1 << 16);
        assert!(Reader { input: &big, budget: 1 }.unsigned(16).is_err());
        let wide = sleb(i32::MAX as i64 + 1);
        assert!(Reader { input: &wide, budget: 1 }.signed(32).is_err());
        let endless = [0x80u8; 20];
        assert!(Reader { input: &endless, budget: 1 }.unsigned(64).is_err());
        assert!(Reader { input: &[0x80], budget: 1 }.unsigned(64).is_err());
    }

    #[test]
    fn primitives_round_trip_and_match_the_wire() {
        let cases: Vec<(Val, Type, Vec<u8>)> = vec![
            (Val::U8(200), Type::U8, vec![0xc8]),
            (Val::S8(-2), Type::S8, vec![0xfe]),
            (Val::S16(-200), Type::S16, vec![0xb8, 0x7e]),
            (Val::U32(300), Type::U32, vec![0xac, 0x02]),
            (Val::S64(-1), Type::S64, vec![0x7f]),
            (Val::Float32(1.5), Type::Float32, vec![0x00, 0x00, 0xc0, 0x3f]),
            (Val::Char('é'), Type::Char, vec![0xc3, 0xa9]),
            (Val::String("hi".into()), Type::String, vec![0x02, 0x68, 0x69]),
            (Val::Bool(true), Type::Bool, vec![0x01]),
        ];
        for (value, ty, bytes) in cases {
            let mut out = Vec::new();
            encode(&value, &ty, &mut out).unwrap();
            assert_eq!(out, bytes, "{value:?}");
            assert_eq!(decode_tuple(&bytes, [ty].into_iter()).unwrap(), [value]);
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert!(decode_tuple(&[2], [Type::Bool].into_iter()).is_err());
        assert!(decode_tuple(&[0xff, 0xff, 0xff, 0xff, 0x0f], [Type::String].into_iter()).is_err());
        assert!(decode_tuple(&[0x02, 0xff, 0xfe], [Type::String].into_iter()).is_err());
        assert!(decode_tuple(&[0xff], [Type::Char].into_iter()).is_err());
        assert!(decode_tuple(&[0xed, 0xa0, 0x80], [Type::Char].into_iter()).is_err());
        assert!(decode_tuple(&[0x00, 0x00], [Type::Float32].into_iter()).is_err());
        assert!(decode_tuple(&[0x01, 0x01], [Type::U8].into_iter()).unwrap_err().0.contains("after the last value"));
        assert!(decode_tuple(&[], [Type::U8].into_iter()).is_err());
        let nan = f32::from_bits(0x7fc0_0001);
        let mut out = Vec::new();
        encode(&Val::Float32(nan), &Type::Float32, &mut out).unwrap();
        assert_eq!(out, 0x7fc0_0000u32.to_le_bytes(), "NaN is written canonical");
    }

    #[test]
    fn a_bytes_parameter_is_found_in_place_and_checked_like_any_other() {
        let bytes: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let message = [leb(300), bytes.clone()].concat();
        let range = decode_bytes_param(&message).unwrap();
        assert_eq!(&message[range], &bytes[..]);
        assert_eq!(decode_bytes_param(&[0]).unwrap(), 1..1, "an empty list");
        let trailing = [message.clone(), vec![0]].concat();
        assert!(decode_bytes_param(&trailing).unwrap_err().0.contains("after the last value"));
        assert!(decode_bytes_param(&message[..100]).unwrap_err().is_incomplete());
        assert!(decode_bytes_param(&[]).unwrap_err().is_incomplete());
        assert!(decode_bytes_param(&leb(u32::MAX as u64 + 1)).is_err(), "a length past 32 bits");
    }
}
