//! Encoding and decoding of arguments and results: postcard, with a nesting limit, caught
//! panics, and the messages of custom serde errors kept.
//!
//! Decoding is where bytes from another process meet user code, so it must not be able to
//! take the decoding thread down: a value nested deeper than [`MAX_DEPTH`] is an error (a
//! recursive `Deserialize` on hostile input would otherwise overflow the stack, which aborts
//! the whole process), and a panicking `Deserialize` or `Serialize` impl becomes an error
//! too. Postcard drops the message of `Error::custom`; the wrappers here (a deserializer and
//! a serializer around postcard's) keep it, both ways.

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serializer};

use super::report;
use crate::error::TaskError;
use crate::map::Chunk;
use crate::outcome::{Codec, Outcome};

/// How deep a decoded value may nest (each sequence, map, struct, enum variant, option or
/// newtype is a level). The threads that decode have stacks sized for it
/// ([`DECODE_STACK`]).
pub(crate) const MAX_DEPTH: usize = 1024;

/// The stack of the threads that decode workers' results. [`MAX_DEPTH`] levels of a derived
/// recursive enum took under 1 MiB in an unoptimised build (measured); this leaves a wide
/// margin for larger frames. Only the pages a decode touches are ever committed.
pub(crate) const DECODE_STACK: usize = 16 << 20;

/// Encodes a value; a failing or panicking `Serialize` impl is an error with its message.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the encoding of a value to `out`; as [`encode`] on failure (`out` is then
/// emptied).
///
/// Plain postcard does the work; only when it fails is the value encoded again through
/// the message-keeping wrapper, to say why (an encoding that failed once fails again the
/// same way: `Serialize` impls are deterministic in practice, and a second run that succeeds
/// is still reported as the first failure).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let taken = std::mem::take(out);
    match panic::catch_unwind(AssertUnwindSafe(|| postcard::to_extend(value, taken))) {
        Ok(Ok(bytes)) => {
            *out = bytes;
            Ok(())
        }
        Ok(Err(e)) => Err(explain(value).unwrap_or_else(|| e.to_string())),
        Err(p) => Err(format!(
            "Serialize panicked: {}",
            crate::error::panic_message(&*p)
        )),
    }
}

/// Appends the encodings of `items` one after another (the body of a postcard sequence),
/// returning where each lies in `out`; one failing item fails them all, as [`encode`] says.
pub(crate) fn encode_items<T: Serialize>(
    items: &[T],
    out: &mut Vec<u8>,
) -> Result<Vec<std::ops::Range<usize>>, String> {
    let mut ranges = Vec::with_capacity(items.len());
    let mut bytes = std::mem::take(out);
    let run = AssertUnwindSafe(|| -> Result<Vec<u8>, (usize, postcard::Error)> {
        for (i, item) in items.iter().enumerate() {
            let start = bytes.len();
            bytes = postcard::to_extend(item, std::mem::take(&mut bytes)).map_err(|e| (i, e))?;
            ranges.push(start..bytes.len());
        }
        Ok(std::mem::take(&mut bytes))
    });
    match panic::catch_unwind(run) {
        Ok(Ok(bytes)) => {
            *out = bytes;
            Ok(ranges)
        }
        Ok(Err((i, e))) => Err(explain(&items[i]).unwrap_or_else(|| e.to_string())),
        Err(p) => Err(format!(
            "Serialize panicked: {}",
            crate::error::panic_message(&*p)
        )),
    }
}

/// Decodes a value from bytes the parent encoded (a worker's arguments): plain postcard,
/// with panics caught. The parent is the same program over a private connection, so these
/// bytes are trusted not to nest deeper than its own values do; results going the other way
/// are decoded with [`decode`].
pub(crate) fn decode_trusted<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(|| postcard::from_bytes(bytes))) {
        Ok(Ok(value)) => Ok(value),
        // Only on failure: decode again through the wrapper that keeps custom messages.
        Ok(Err(e)) => Err(decode::<T>(bytes).err().unwrap_or_else(|| e.to_string())),
        Err(p) => Err(format!(
            "Deserialize panicked: {}",
            crate::error::panic_message(&*p)
        )),
    }
}

/// The message of the first custom error a value's `Serialize` impl raises, if any.
fn explain<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    let message = RefCell::new(None);
    let kept = Kept {
        value,
        message: &message,
    };
    let _ = panic::catch_unwind(AssertUnwindSafe(|| postcard::to_stdvec(&kept)));
    message.into_inner()
}

/// Decodes a value from untrusted bytes: nesting past [`MAX_DEPTH`], trailing bytes, a
/// custom error or a panic in a `Deserialize` impl are errors, never a crash.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let message = RefCell::new(None);
    let run = || {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = T::deserialize(Limited {
            de: &mut de,
            depth: MAX_DEPTH,
            message: &message,
        });
        (value, de.finalize().map(|rest| rest.len()))
    };
    match panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok((Ok(value), Ok(0))) => Ok(value),
        Ok((Ok(_), Ok(rest))) => Err(format!("{rest} unexpected bytes after the value")),
        Ok((Ok(_), Err(e))) => Err(e.to_string()),
        Ok((Err(e), _)) => Err(message.into_inner().unwrap_or(*e.0)),
        Err(p) => Err(format!(
            "Deserialize panicked: {}",
            crate::error::panic_message(&*p)
        )),
    }
}

/// An error that keeps its message (postcard's `custom` does not).
#[derive(Debug)]
/// Boxed, so that every `Result` on the decoding path stays two words (a `String` made each
/// one three, which cost a measurable share of chunked `map` throughput).
#[allow(clippy::box_collection)] // on purpose: one word, see above
pub(crate) struct Error(Box<String>);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(Box::new(msg.to_string()))
    }
}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(Box::new(msg.to_string()))
    }
}

/// Where the first message of an error on its way through postcard is kept, since postcard
/// replaces it with a generic one.
type Message<'m> = &'m RefCell<Option<String>>;

/// Hands our error to postcard as its own, keeping the message aside.
fn smuggle<E: de::Error>(message: Message<'_>, err: Error) -> E {
    E::custom(keep(message, err))
}

/// The same on the way out.
fn smuggle_out<E: ser::Error>(message: Message<'_>, err: Error) -> E {
    E::custom(keep(message, err))
}

fn keep(message: Message<'_>, err: Error) -> String {
    let mut kept = message.borrow_mut();
    if kept.is_none() {
        *kept = Some((*err.0).clone());
    }
    *err.0
}

/// Takes an error back from postcard, preferring the message kept aside.
fn recover<E: fmt::Display>(message: Message<'_>, err: E) -> Error {
    Error(Box::new(
        message.borrow().clone().unwrap_or_else(|| err.to_string()),
    ))
}

fn deeper(depth: usize) -> Result<usize, Error> {
    depth.checked_sub(1).ok_or_else(|| {
        Error(Box::new(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )))
    })
}

/// A deserializer that counts nesting and keeps messages; wraps every deserializer that
/// postcard hands to user code.
struct Limited<'m, D> {
    de: D,
    depth: usize,
    message: Message<'m>,
}

/// A visitor that wraps what the inner deserializer hands it.
struct Wrap<'m, V> {
    visitor: V,
    depth: usize,
    message: Message<'m>,
}

/// A seed that wraps the deserializer it is given, one level deeper.
struct Seed<'m, S> {
    seed: S,
    depth: usize,
    message: Message<'m>,
}

/// Sequence, map and enum accesses that wrap their elements.
struct Access<'m, A> {
    access: A,
    depth: usize,
    message: Message<'m>,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            let message = self.message;
            let wrapped = Wrap { visitor, depth: self.depth, message };
            self.de.$method($($arg,)* wrapped).map_err(|e| recover(message, e))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            let message = self.message;
            self.visitor.$method::<Error>(v).map_err(|e| smuggle(message, e))
        }
    )*};
}

/// Visits a sequence, map or enum through an [`Access`] that wraps its elements.
macro_rules! forward_access {
    ($($method:ident($($bound:tt)*);)*) => {$(
        fn $method<A: $($bound)*<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
            let Wrap { visitor, depth, message } = self;
            visitor
                .$method(Access { access, depth, message })
                .map_err(|e| smuggle(message, e))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        let message = self.message;
        self.visitor
            .visit_none::<Error>()
            .map_err(|e| smuggle(message, e))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        let message = self.message;
        self.visitor
            .visit_unit::<Error>()
            .map_err(|e| smuggle(message, e))
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let message = self.message;
        let depth = deeper(self.depth).map_err(|e| smuggle(message, e))?;
        self.visitor
            .visit_some(Limited { de, depth, message })
            .map_err(|e| smuggle(message, e))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let message = self.message;
        let depth = deeper(self.depth).map_err(|e| smuggle(message, e))?;
        self.visitor
            .visit_newtype_struct(Limited { de, depth, message })
            .map_err(|e| smuggle(message, e))
    }

    forward_access! {
        visit_seq(de::SeqAccess);
        visit_map(de::MapAccess);
        visit_enum(de::EnumAccess);
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let message = self.message;
        let depth = deeper(self.depth).map_err(|e| smuggle(message, e))?;
        self.seed
            .deserialize(Limited { de, depth, message })
            .map_err(|e| smuggle(message, e))
    }
}

impl<'m, A> Access<'m, A> {
    fn seed<S>(&self, seed: S) -> Seed<'m, S> {
        Seed {
            seed,
            depth: self.depth,
            message: self.message,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let seed = self.seed(seed);
        let message = self.message;
        self.access
            .next_element_seed(seed)
            .map_err(|e| recover(message, e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.access.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let seed = self.seed(seed);
        let message = self.message;
        self.access
            .next_key_seed(seed)
            .map_err(|e| recover(message, e))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let seed = self.seed(seed);
        let message = self.message;
        self.access
            .next_value_seed(seed)
            .map_err(|e| recover(message, e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.access.size_hint()
    }
}

impl<'de, 'm, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'m, A> {
    type Error = Error;
    type Variant = Access<'m, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Error> {
        let message = self.message;
        let depth = self.depth;
        let (value, access) = self
            .access
            .variant_seed(self_seed(seed, depth, message))
            .map_err(|e| recover(message, e))?;
        Ok((
            value,
            Access {
                access,
                depth,
                message,
            },
        ))
    }
}

fn self_seed<S>(seed: S, depth: usize, message: Message<'_>) -> Seed<'_, S> {
    Seed {
        seed,
        depth,
        message,
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        let message = self.message;
        self.access.unit_variant().map_err(|e| recover(message, e))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let seed = self.seed(seed);
        let message = self.message;
        self.access
            .newtype_variant_seed(seed)
            .map_err(|e| recover(message, e))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let message = self.message;
        let depth = deeper(self.depth)?;
        let visitor = Wrap {
            visitor,
            depth,
            message,
        };
        self.access
            .tuple_variant(len, visitor)
            .map_err(|e| recover(message, e))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let message = self.message;
        let depth = deeper(self.depth)?;
        let visitor = Wrap {
            visitor,
            depth,
            message,
        };
        self.access
            .struct_variant(fields, visitor)
            .map_err(|e| recover(message, e))
    }
}

/// A value serialized through [`Capture`], so that its (and its parts') custom errors keep
/// their message.
struct Kept<'a, 'm, T: ?Sized> {
    value: &'a T,
    message: Message<'m>,
}

impl<T: Serialize + ?Sized> Serialize for Kept<'_, '_, T> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let message = self.message;
        self.value
            .serialize(Capture { ser, message })
            .map_err(|e| smuggle_out(message, e))
    }
}

/// A serializer whose error type keeps messages; wraps every serializer that postcard hands
/// to user code.
struct Capture<'m, S> {
    ser: S,
    message: Message<'m>,
}

/// A compound serializer (sequence, tuple, map, struct) that wraps its elements.
struct Parts<'m, C> {
    parts: C,
    message: Message<'m>,
}

macro_rules! forward_serialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, Error> {
            let message = self.message;
            self.ser.$method($($arg),*).map_err(|e| recover(message, e))
        }
    )*};
}

macro_rules! forward_compound {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $inner:ident;)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<Parts<'m, S::$inner>, Error> {
            let message = self.message;
            let parts = self.ser.$method($($arg),*).map_err(|e| recover(message, e))?;
            Ok(Parts { parts, message })
        }
    )*};
}

impl<'m, S: Serializer> Serializer for Capture<'m, S> {
    type Ok = S::Ok;
    type Error = Error;
    type SerializeSeq = Parts<'m, S::SerializeSeq>;
    type SerializeTuple = Parts<'m, S::SerializeTuple>;
    type SerializeTupleStruct = Parts<'m, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Parts<'m, S::SerializeTupleVariant>;
    type SerializeMap = Parts<'m, S::SerializeMap>;
    type SerializeStruct = Parts<'m, S::SerializeStruct>;
    type SerializeStructVariant = Parts<'m, S::SerializeStructVariant>;

    forward_serialize! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    forward_compound! {
        serialize_seq(len: Option<usize>) -> SerializeSeq;
        serialize_tuple(len: usize) -> SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Error> {
        let message = self.message;
        self.ser
            .serialize_some(&Kept { value, message })
            .map_err(|e| recover(message, e))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, Error> {
        let message = self.message;
        self.ser
            .serialize_newtype_struct(name, &Kept { value, message })
            .map_err(|e| recover(message, e))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Error> {
        let message = self.message;
        self.ser
            .serialize_newtype_variant(name, index, variant, &Kept { value, message })
            .map_err(|e| recover(message, e))
    }

    fn is_human_readable(&self) -> bool {
        self.ser.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $($method:ident($($arg:ident: $ty:ty),*);)*) => {
        impl<C: ser::$trait> ser::$trait for Parts<'_, C> {
            type Ok = C::Ok;
            type Error = Error;

            $(
                fn $method<T: Serialize + ?Sized>(&mut self, $($arg: $ty,)* value: &T) -> Result<(), Error> {
                    let message = self.message;
                    self.parts
                        .$method($($arg,)* &Kept { value, message })
                        .map_err(|e| recover(message, e))
                }
            )*

            fn end(self) -> Result<C::Ok, Error> {
                let message = self.message;
                self.parts.end().map_err(|e| recover(message, e))
            }
        }
    };
}

compound!(SerializeSeq, serialize_element(););
compound!(SerializeTuple, serialize_element(););
compound!(SerializeTupleStruct, serialize_field(););
compound!(SerializeTupleVariant, serialize_field(););
compound!(SerializeStruct, serialize_field(key: &'static str););
compound!(SerializeStructVariant, serialize_field(key: &'static str););

impl<C: ser::SerializeMap> ser::SerializeMap for Parts<'_, C> {
    type Ok = C::Ok;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let message = self.message;
        self.parts
            .serialize_key(&Kept {
                value: key,
                message,
            })
            .map_err(|e| recover(message, e))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let message = self.message;
        self.parts
            .serialize_value(&Kept { value, message })
            .map_err(|e| recover(message, e))
    }

    fn end(self) -> Result<C::Ok, Error> {
        let message = self.message;
        self.parts.end().map_err(|e| recover(message, e))
    }
}

/// The process pool's wire format for `crate::outcome`: postcard, through the functions
/// above. A chunk's outcomes go as a `Vec<Result<R, Box<PanicReport>>>`: boxed, so that a
/// chunk's results stay as small as the values (an inline report would make every slot 80
/// bytes).
pub(crate) struct Postcard;

impl Codec for Postcard {
    type Bytes = Vec<u8>;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        encode(value)
    }

    fn decode_argument<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        decode_trusted(bytes)
    }

    fn decode_result<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        decode(bytes)
    }

    fn bad_argument(why: String) -> TaskError {
        // The parent encoded it from the same types: not the task's fault.
        TaskError::Transport(why.into())
    }

    fn panicked(payload: &(dyn std::any::Any + Send)) -> TaskError {
        report::panic_error(report::panic_report(payload, report::frame_limit()))
    }

    fn encode_chunk<R: Serialize>(items: &[Outcome<R>]) -> Result<Vec<u8>, String> {
        encode(&Items(items))
    }

    fn decode_chunk<R: DeserializeOwned>(bytes: &[u8]) -> Result<Chunk<R>, String> {
        let items: Vec<Result<R, Box<report::PanicReport>>> = decode(bytes)?;
        if items.iter().all(Result::is_ok) {
            // The common case, handed over as bare values (see `Chunk`).
            return Ok(Chunk::Values(items.into_iter().flatten().collect()));
        }
        Ok(items
            .into_iter()
            .map(|r| r.map_err(|report| Box::new(report::panic_error(*report))))
            .collect())
    }
}

/// A chunk's outcomes, serialized as the `Vec<Result<R, Box<PanicReport>>>` that
/// [`Postcard::decode_chunk`] reads, without building that vector.
struct Items<'a, R>(&'a [Outcome<R>]);

impl<R: Serialize> Serialize for Items<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|item| {
            item.as_ref().map_err(|err| match err {
                TaskError::Panicked(panic) => report::report_of(panic),
                // A chunk's item fails only by panicking; anything else keeps its text.
                other => (
                    other.to_string(),
                    std::process::id(),
                    String::new(),
                    String::new(),
                ),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum List {
        Nil,
        Node(Box<List>),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
        next: Option<Box<Tree>>,
    }

    fn list(depth: usize) -> List {
        (0..depth).fold(List::Nil, |l, _| List::Node(Box::new(l)))
    }

    /// Runs on a thread with room to build, encode and drop a 50,000-level value.
    fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(64 << 20) // building and dropping 50,000 levels recurses too
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn round_trips_ordinary_values() {
        let tree = Tree {
            label: "root".into(),
            children: vec![Tree {
                label: "leaf".into(),
                children: vec![],
                next: None,
            }],
            next: Some(Box::new(Tree {
                label: "n".into(),
                children: vec![],
                next: None,
            })),
        };
        let bytes = encode(&tree).unwrap();
        assert_eq!(decode::<Tree>(&bytes).unwrap(), tree);
        let pair = (7u64, "x".to_string(), vec![Some(1i8), None]);
        assert_eq!(
            decode::<(u64, String, Vec<Option<i8>>)>(&encode(&pair).unwrap()).unwrap(),
            pair
        );
    }

    #[test]
    fn nesting_up_to_the_limit_decodes_and_past_it_is_an_error() {
        on_big_stack(|| {
            // `Node` adds two levels (the variant and its content).
            let ok = encode(&list(MAX_DEPTH / 2 - 1)).unwrap();
            assert!(decode::<List>(&ok).is_ok());
            let deep = encode(&list(50_000)).unwrap();
            let err = decode::<List>(&deep).unwrap_err();
            assert!(err.contains("nested deeper than 1024"), "{err}");
            // The encoding of 50,000 levels, dropped on this big stack too.
            drop(deep);
        });
    }

    #[test]
    fn hostile_nesting_fails_on_a_small_stack_too() {
        // Bytes that claim 60,000 nested `Node`s (variant index 1, repeated), decoded on a
        // 2 MiB thread: the limit stops it long before the stack would overflow.
        let bytes = vec![1u8; 60_000];
        let err = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode::<List>(&bytes).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[derive(Debug)]
    struct Picky;
    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u8::deserialize(d)?;
            Err(de::Error::custom(format!("{n} is not allowed here")))
        }
    }

    #[derive(Debug)]
    struct Panicky;
    impl<'de> Deserialize<'de> for Panicky {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("Deserialize blew up")
        }
    }

    #[test]
    fn custom_messages_are_kept_and_panics_are_errors() {
        let err = decode::<Vec<Picky>>(&encode(&vec![3u8]).unwrap()).unwrap_err();
        assert_eq!(err, "3 is not allowed here");
        let err = decode::<Panicky>(&[0]).unwrap_err();
        assert_eq!(err, "Deserialize panicked: Deserialize blew up");
    }

    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("this value cannot leave the process"))
        }
    }

    #[test]
    fn custom_serialize_messages_are_kept_at_any_depth() {
        let err = encode(&Refuses).unwrap_err();
        assert_eq!(err, "this value cannot leave the process");
        let nested = (1u8, vec![Some(Refuses)]);
        assert_eq!(
            encode(&nested).unwrap_err(),
            "this value cannot leave the process"
        );
        let mut out = vec![9];
        assert!(encode_into(&nested, &mut out).is_err());
        // Values without errors encode exactly as postcard does.
        let plain = (7u32, "x", vec![Some(1.5f64)], [(1u8, 'c')]);
        assert_eq!(
            encode(&plain).unwrap(),
            postcard::to_stdvec(&plain).unwrap()
        );
    }

    #[test]
    fn trailing_and_missing_bytes_are_errors() {
        assert!(
            decode::<u8>(&[1, 2])
                .unwrap_err()
                .contains("unexpected bytes")
        );
        assert!(decode::<String>(&[5, b'a']).is_err());
    }
}
