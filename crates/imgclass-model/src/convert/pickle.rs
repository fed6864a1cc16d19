//! A small, inert pickle virtual machine.
//!
//! torch's legacy checkpoint format is a run of pickles. Reading them with
//! Python's `pickle` would execute whatever callables the file names, so this
//! VM never calls anything: `GLOBAL` only records a name and `REDUCE` only
//! records "this callable applied to these arguments". The caller (`torch.rs`)
//! then interprets the handful of call shapes torch emits.
//!
//! Objects live in an arena and the stack/memo hold indices into it. That
//! gives Python's reference semantics for free — a dict that is memoised and
//! *then* filled by `SETITEMS` is the same object when fetched back with
//! `BINGET` — without `Rc<RefCell<…>>`. Every opcode creates at most one
//! object, so the arena can never outgrow the input.
//!
//! Only the opcodes torch's legacy `torch.save` emits (plus a few trivial
//! relatives) are understood; anything else is a clear error naming the
//! opcode and its byte offset, never a panic.

use std::collections::HashMap;

use super::ConvertError;

/// Index of an object in [`Pickle::objects`].
pub type ObjId = usize;

/// An unpickled value. Containers refer to their members by [`ObjId`].
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    /// Python ints; 128 bits cover everything torch writes (the legacy magic
    /// number needs 80).
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<ObjId>),
    List(Vec<ObjId>),
    /// Insertion-ordered, like `OrderedDict`.
    Dict(Vec<(ObjId, ObjId)>),
    /// A `module.name` reference (from `GLOBAL`/`STACK_GLOBAL`), never imported.
    Global {
        module: String,
        name: String,
    },
    /// `func(*args)` recorded by `REDUCE`, never executed.
    Call {
        func: ObjId,
        args: ObjId,
    },
    /// The object a persistent id refers to (`BINPERSID`); torch uses it for
    /// tensor storages that live outside the pickle.
    PersistentId(ObjId),
}

/// The result of running one pickle: the object arena and the root object.
#[derive(Debug)]
pub struct Pickle {
    objects: Vec<Obj>,
    root: ObjId,
}

impl Pickle {
    /// The value `STOP` returned.
    pub fn root(&self) -> ObjId {
        self.root
    }

    /// Looks an object up. Ids only come from this pickle, so a miss means a
    /// caller bug; it is still reported as an error rather than a panic.
    pub fn get(&self, id: ObjId) -> Result<&Obj, ConvertError> {
        self.objects
            .get(id)
            .ok_or_else(|| ConvertError::Pickle(format!("object id {id} out of range")))
    }

    /// The string at `id`, or an error describing what was found instead.
    pub fn str(&self, id: ObjId, what: &str) -> Result<&str, ConvertError> {
        match self.get(id)? {
            Obj::Str(s) => Ok(s),
            other => Err(ConvertError::Pickle(format!(
                "{what}: expected a string, found {}",
                kind(other)
            ))),
        }
    }

    /// A non-negative int at `id` as `usize`.
    pub fn usize(&self, id: ObjId, what: &str) -> Result<usize, ConvertError> {
        match self.get(id)? {
            Obj::Int(v) => usize::try_from(*v).map_err(|_| {
                ConvertError::Pickle(format!("{what}: {v} is not a valid non-negative size"))
            }),
            other => Err(ConvertError::Pickle(format!(
                "{what}: expected an int, found {}",
                kind(other)
            ))),
        }
    }

    /// The members of a tuple or list at `id`.
    pub fn sequence(&self, id: ObjId, what: &str) -> Result<&[ObjId], ConvertError> {
        match self.get(id)? {
            Obj::Tuple(items) | Obj::List(items) => Ok(items),
            other => Err(ConvertError::Pickle(format!(
                "{what}: expected a tuple or list, found {}",
                kind(other)
            ))),
        }
    }
}

/// A short human name for an object's kind, for error messages.
pub fn kind(obj: &Obj) -> &'static str {
    match obj {
        Obj::None => "None",
        Obj::Bool(_) => "bool",
        Obj::Int(_) => "int",
        Obj::Float(_) => "float",
        Obj::Str(_) => "str",
        Obj::Bytes(_) => "bytes",
        Obj::Tuple(_) => "tuple",
        Obj::List(_) => "list",
        Obj::Dict(_) => "dict",
        Obj::Global { .. } => "global",
        Obj::Call { .. } => "call",
        Obj::PersistentId(_) => "persistent id",
    }
}

/// Opcode byte values (see CPython's `Lib/pickletools.py`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const LIST: u8 = b'l';
    pub const DICT: u8 = b'd';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const MEMOIZE: u8 = 0x94;
}

/// Highest pickle protocol we accept (Python 3.8+ writes 5).
const MAX_PROTOCOL: u8 = 5;

/// Runs the pickle starting at `data[0]` until its `STOP` opcode.
///
/// Returns the object graph and the number of bytes consumed, so a caller can
/// read several pickles laid end to end (as torch's legacy format does).
pub fn parse(data: &[u8]) -> Result<(Pickle, usize), ConvertError> {
    let mut vm = Vm {
        data,
        pos: 0,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    Ok((
        Pickle {
            objects: vm.objects,
            root,
        },
        vm.pos,
    ))
}

/// An error at byte offset `at` of the pickle.
fn perr(at: usize, msg: impl std::fmt::Display) -> ConvertError {
    ConvertError::Pickle(format!("at byte {at}: {msg}"))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    objects: Vec<Obj>,
    stack: Vec<ObjId>,
    /// Stack depths saved by `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, ObjId>,
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ConvertError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                perr(
                    self.pos,
                    format!(
                        "truncated: need {n} bytes, {} left",
                        self.data.len() - self.pos
                    ),
                )
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], ConvertError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32_le(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    /// A length prefix; `u64` lengths that do not fit in memory fail in `take`.
    fn len_u64(&mut self) -> Result<usize, ConvertError> {
        let at = self.pos;
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| perr(at, format!("length {n} too large")))
    }

    /// A `\n`-terminated line, as `GLOBAL` uses for module and name.
    fn line(&mut self) -> Result<String, ConvertError> {
        let start = self.pos;
        let rest = &self.data[start..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| perr(start, "unterminated GLOBAL line"))?;
        let text = std::str::from_utf8(&rest[..nl])
            .map_err(|_| perr(start, "GLOBAL name is not UTF-8"))?
            .to_owned();
        self.pos = start + nl + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<String, ConvertError> {
        let at = self.pos;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(perr(at, "string is not valid UTF-8")),
        }
    }

    fn alloc(&mut self, obj: Obj) -> ObjId {
        self.objects.push(obj);
        self.objects.len() - 1
    }

    fn push(&mut self, obj: Obj) {
        let id = self.alloc(obj);
        self.stack.push(id);
    }

    fn pop(&mut self, at: usize) -> Result<ObjId, ConvertError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(perr(at, "stack underflow"));
        }
        self.stack.pop().ok_or_else(|| perr(at, "stack underflow"))
    }

    /// The top of the stack, which (as in CPython) must lie above the
    /// innermost open `MARK`.
    fn top(&self, at: usize) -> Result<ObjId, ConvertError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(perr(at, "stack is empty"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| perr(at, "stack is empty"))
    }

    /// Pops everything above the most recent `MARK`, and the mark itself.
    fn pop_mark(&mut self, at: usize) -> Result<Vec<ObjId>, ConvertError> {
        let depth = self
            .marks
            .pop()
            .ok_or_else(|| perr(at, "no MARK on the stack"))?;
        if depth > self.stack.len() {
            return Err(perr(at, "MARK is above the stack top"));
        }
        Ok(self.stack.split_off(depth))
    }

    fn memo_get(&self, at: usize, key: u32) -> Result<ObjId, ConvertError> {
        self.memo
            .get(&key)
            .copied()
            .ok_or_else(|| perr(at, format!("memo key {key} was never stored")))
    }

    fn memo_put(&mut self, at: usize, key: u32) -> Result<(), ConvertError> {
        let top = self.top(at)?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn dict_mut(&mut self, at: usize, id: ObjId) -> Result<&mut Vec<(ObjId, ObjId)>, ConvertError> {
        match self.objects.get_mut(id) {
            Some(Obj::Dict(items)) => Ok(items),
            Some(other) => {
                let k = kind(other);
                Err(perr(at, format!("SETITEM(S) on a {k}, not a dict")))
            }
            None => Err(perr(at, "dangling object id")),
        }
    }

    fn list_mut(&mut self, at: usize, id: ObjId) -> Result<&mut Vec<ObjId>, ConvertError> {
        match self.objects.get_mut(id) {
            Some(Obj::List(items)) => Ok(items),
            Some(other) => {
                let k = kind(other);
                Err(perr(at, format!("APPEND(S) on a {k}, not a list")))
            }
            None => Err(perr(at, "dangling object id")),
        }
    }

    fn pairs(&self, at: usize, items: Vec<ObjId>) -> Result<Vec<(ObjId, ObjId)>, ConvertError> {
        if !items.len().is_multiple_of(2) {
            return Err(perr(at, "odd number of items for key/value pairs"));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    /// `REDUCE`: records the call. The one exception is `collections.OrderedDict()`
    /// with no arguments, which becomes an empty dict so that the `SETITEMS`
    /// torch uses to fill its state dict can work on it.
    fn reduce(&mut self, func: ObjId, args: ObjId) -> Obj {
        let is_ordered_dict = matches!(
            self.objects.get(func),
            Some(Obj::Global { module, name }) if module == "collections" && name == "OrderedDict"
        );
        let no_args = matches!(self.objects.get(args), Some(Obj::Tuple(a)) if a.is_empty());
        if is_ordered_dict && no_args {
            Obj::Dict(Vec::new())
        } else {
            Obj::Call { func, args }
        }
    }

    fn run(&mut self) -> Result<ObjId, ConvertError> {
        loop {
            let at = self.pos;
            let code = self
                .u8()
                .map_err(|_| perr(at, "truncated: no STOP opcode"))?;
            match code {
                op::PROTO => {
                    let version = self.u8()?;
                    if version > MAX_PROTOCOL {
                        return Err(perr(at, format!("unsupported protocol {version}")));
                    }
                }
                op::FRAME => {
                    // Framing only batches reads; the content is the same opcodes.
                    self.len_u64()?;
                }
                op::STOP => {
                    let root = self.pop(at)?;
                    if !self.marks.is_empty() {
                        return Err(perr(at, "STOP with an unclosed MARK"));
                    }
                    return Ok(root);
                }
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    self.pop(at)?;
                }
                op::POP_MARK => {
                    self.pop_mark(at)?;
                }
                op::DUP => {
                    let top = self.top(at)?;
                    self.stack.push(top);
                }
                op::NONE => self.push(Obj::None),
                op::NEWTRUE => self.push(Obj::Bool(true)),
                op::NEWFALSE => self.push(Obj::Bool(false)),
                op::BININT => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Obj::Int(i128::from(v)));
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Obj::Int(i128::from(v)));
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push(Obj::Int(i128::from(v)));
                }
                op::LONG1 | op::LONG4 => {
                    let n = if code == op::LONG1 {
                        usize::from(self.u8()?)
                    } else {
                        self.u32_le()? as usize
                    };
                    let bytes = self.take(n)?;
                    let v = signed_le(bytes)
                        .ok_or_else(|| perr(at, format!("{n}-byte integer is too large")))?;
                    self.push(Obj::Int(v));
                }
                op::BINFLOAT => {
                    // The one big-endian field in the pickle format.
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Obj::Float(v));
                }
                op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                    let n = match code {
                        op::SHORT_BINUNICODE => usize::from(self.u8()?),
                        op::BINUNICODE => self.u32_le()? as usize,
                        _ => self.len_u64()?,
                    };
                    let s = self.utf8(n)?;
                    self.push(Obj::Str(s));
                }
                op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 => {
                    let n = match code {
                        op::SHORT_BINBYTES => usize::from(self.u8()?),
                        op::BINBYTES => self.u32_le()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b));
                }
                op::EMPTY_DICT => self.push(Obj::Dict(Vec::new())),
                op::EMPTY_LIST => self.push(Obj::List(Vec::new())),
                op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new())),
                op::TUPLE => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::Tuple(items));
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                op::LIST => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::List(items));
                }
                op::DICT => {
                    let items = self.pop_mark(at)?;
                    let pairs = self.pairs(at, items)?;
                    self.push(Obj::Dict(pairs));
                }
                op::SETITEM => {
                    let value = self.pop(at)?;
                    let key = self.pop(at)?;
                    let dict = self.top(at)?;
                    self.dict_mut(at, dict)?.push((key, value));
                }
                op::SETITEMS => {
                    let items = self.pop_mark(at)?;
                    let pairs = self.pairs(at, items)?;
                    let dict = self.top(at)?;
                    self.dict_mut(at, dict)?.extend(pairs);
                }
                op::APPEND => {
                    let value = self.pop(at)?;
                    let list = self.top(at)?;
                    self.list_mut(at, list)?.push(value);
                }
                op::APPENDS => {
                    let items = self.pop_mark(at)?;
                    let list = self.top(at)?;
                    self.list_mut(at, list)?.extend(items);
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Obj::Global { module, name });
                }
                op::STACK_GLOBAL => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let (Some(Obj::Str(module)), Some(Obj::Str(name))) =
                        (self.objects.get(module), self.objects.get(name))
                    else {
                        return Err(perr(at, "STACK_GLOBAL needs two strings"));
                    };
                    let obj = Obj::Global {
                        module: module.clone(),
                        name: name.clone(),
                    };
                    self.push(obj);
                }
                op::REDUCE => {
                    let args = self.pop(at)?;
                    let func = self.pop(at)?;
                    let obj = self.reduce(func, args);
                    self.push(obj);
                }
                op::BUILD => {
                    // The state is dropped: the only BUILD torch's legacy save
                    // emits sets the state dict's `_metadata` attribute (module
                    // versions), which conversion does not need.
                    self.pop(at)?;
                    self.top(at)?;
                }
                op::BINPERSID => {
                    let pid = self.pop(at)?;
                    self.push(Obj::PersistentId(pid));
                }
                op::BINPUT => {
                    let key = self.u8()?;
                    self.memo_put(at, u32::from(key))?;
                }
                op::LONG_BINPUT => {
                    let key = self.u32_le()?;
                    self.memo_put(at, key)?;
                }
                op::MEMOIZE => {
                    let key =
                        u32::try_from(self.memo.len()).map_err(|_| perr(at, "memo overflow"))?;
                    self.memo_put(at, key)?;
                }
                op::BINGET => {
                    let key = self.u8()?;
                    let id = self.memo_get(at, u32::from(key))?;
                    self.stack.push(id);
                }
                op::LONG_BINGET => {
                    let key = self.u32_le()?;
                    let id = self.memo_get(at, key)?;
                    self.stack.push(id);
                }
                other => {
                    return Err(perr(
                        at,
                        format!("unsupported opcode 0x{other:02x} ({:?})", char::from(other)),
                    ));
                }
            }
        }
    }
}

/// Decodes a little-endian two's-complement integer (pickle's LONG1/LONG4),
/// or `None` if it does not fit in 128 bits.
fn signed_le(bytes: &[u8]) -> Option<i128> {
    let Some(&last) = bytes.last() else {
        return Some(0); // LONG1 with length 0 encodes 0.
    };
    let negative = last & 0x80 != 0;
    let fill = if negative { 0xff } else { 0x00 };
    if bytes.len() > 16 {
        // Larger encodings are fine only if the extra bytes are pure sign fill.
        let (low, high) = bytes.split_at(16);
        if high.iter().any(|&b| b != fill) || (low[15] & 0x80 != 0) != negative {
            return None;
        }
        return signed_le(low);
    }
    let mut buf = [fill; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(i128::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Pickle {
        let (p, used) = parse(bytes).expect("valid pickle");
        assert_eq!(used, bytes.len(), "consumed everything up to STOP");
        p
    }

    #[test]
    fn long1_magic_number() {
        // Protocol 2 pickle of torch's legacy magic number 0x1950a86a20f9469cfc6c.
        let bytes = [
            0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
        ];
        let p = run(&bytes);
        assert_eq!(
            p.get(p.root()).unwrap(),
            &Obj::Int(0x1950a86a20f9469cfc6c_i128)
        );
    }

    #[test]
    fn small_ints_and_negative_long() {
        assert_eq!(signed_le(&[]), Some(0));
        assert_eq!(signed_le(&[0xff]), Some(-1));
        assert_eq!(signed_le(&[0x00, 0x80]), Some(-32768));
        assert_eq!(signed_le(&[0xff; 20]), Some(-1));
        assert_eq!(signed_le(&[0x01; 17]), None);
        // (1000, -2, 70000) via BININT2, BININT, BININT
        let mut bytes = vec![0x80, 2, b'(', b'M', 0xe8, 0x03, b'J'];
        bytes.extend_from_slice(&(-2i32).to_le_bytes());
        bytes.push(b'J');
        bytes.extend_from_slice(&70000i32.to_le_bytes());
        bytes.extend_from_slice(b"t.");
        let p = run(&bytes);
        let items = p.sequence(p.root(), "t").unwrap();
        let values: Vec<_> = items.iter().map(|&i| p.get(i).unwrap().clone()).collect();
        assert_eq!(values, vec![Obj::Int(1000), Obj::Int(-2), Obj::Int(70000)]);
    }

    #[test]
    fn dict_filled_after_memoising_is_shared() {
        // d = {}; memo[0] = d; d['a'] = 1.5; return [d, memo[0]]
        let mut bytes = vec![
            0x80, 2, b']', b'(', b'}', b'q', 0, b'X', 1, 0, 0, 0, b'a', b'G',
        ];
        bytes.extend_from_slice(&1.5f64.to_be_bytes());
        bytes.extend_from_slice(&[b's', b'h', 0, b'e', b'.']);
        let p = run(&bytes);
        let items = p.sequence(p.root(), "list").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1], "same object, not a copy");
        let Obj::Dict(pairs) = p.get(items[0]).unwrap() else {
            panic!("expected dict");
        };
        assert_eq!(pairs.len(), 1);
        assert_eq!(p.str(pairs[0].0, "key").unwrap(), "a");
        assert_eq!(p.get(pairs[0].1).unwrap(), &Obj::Float(1.5));
    }

    #[test]
    fn globals_reduce_persid_and_tuples() {
        // OrderedDict() then {'w': rebuild(persid(('storage', 'k')),)} with BUILD
        let mut b = vec![0x80, 2];
        b.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        b.extend_from_slice(&[b'X', 1, 0, 0, 0, b'w']);
        b.extend_from_slice(b"cmod\nfn\n");
        b.extend_from_slice(&[0x8c, 7]);
        b.extend_from_slice(b"storage");
        b.extend_from_slice(&[0x8c, 1, b'k', 0x86, b'Q', 0x85, b'R', b's']);
        b.extend_from_slice(b"}b."); // BUILD with an empty state
        let p = run(&b);
        let Obj::Dict(pairs) = p.get(p.root()).unwrap() else {
            panic!("OrderedDict() should become a dict");
        };
        assert_eq!(p.str(pairs[0].0, "key").unwrap(), "w");
        let Obj::Call { func, args } = p.get(pairs[0].1).unwrap() else {
            panic!("expected a recorded call");
        };
        assert_eq!(
            p.get(*func).unwrap(),
            &Obj::Global {
                module: "mod".into(),
                name: "fn".into()
            }
        );
        let args = p.sequence(*args, "args").unwrap();
        let Obj::PersistentId(pid) = p.get(args[0]).unwrap() else {
            panic!("expected persistent id");
        };
        let pid = p.sequence(*pid, "pid").unwrap();
        assert_eq!(p.str(pid[0], "0").unwrap(), "storage");
        assert_eq!(p.str(pid[1], "1").unwrap(), "k");
    }

    #[test]
    fn reads_consecutive_pickles() {
        let bytes = [0x80, 2, b'N', b'.', 0x80, 2, 0x88, b'.'];
        let (first, used) = parse(&bytes).unwrap();
        assert_eq!(used, 4);
        assert_eq!(first.get(first.root()).unwrap(), &Obj::None);
        let (second, used2) = parse(&bytes[used..]).unwrap();
        assert_eq!(used2, 4);
        assert_eq!(second.get(second.root()).unwrap(), &Obj::Bool(true));
    }

    #[test]
    fn malformed_pickles_are_errors() {
        let cases: &[&[u8]] = &[
            b"",                                   // empty
            &[0x80, 2, b'N'],                      // no STOP
            &[0x80, 9, b'N', b'.'],                // protocol too new
            b".",                                  // STOP on empty stack
            &[b'h', 3, b'.'],                      // memo miss
            b"Nt.",                                // TUPLE without MARK
            b"(N.",                                // unclosed MARK
            b"NNs.",                               // SETITEM without a dict
            &[b'X', 0xff, 0, 0, 0, b'a'],          // string longer than input
            b"cmo",                                // unterminated GLOBAL
            b"i.",                                 // INST: unsupported
            &[0x8a, 0xff, 1, 2],                   // LONG1 longer than input
            b"(Nd.",                               // odd dict items
            &[b'X', 2, 0, 0, 0, 0xff, 0xfe, b'.'], // invalid UTF-8
        ];
        for case in cases {
            let err = parse(case).expect_err("must fail");
            assert!(matches!(err, ConvertError::Pickle(_)), "{case:?} -> {err}");
        }
    }

    #[test]
    fn mark_shields_items_below_it() {
        // A pop across a MARK boundary must fail, not steal the outer item.
        let bytes = [b'N', b'(', 0x85, b'.'];
        assert!(parse(&bytes).is_err());
    }
}
