//! A minimal, safe reader of Python pickles: enough for dataset files made of dicts, lists,
//! numbers, strings and numpy arrays (as written by Python 2's cPickle or Python 3's pickle,
//! protocols 0 to 5 with in-band buffers). It never runs code: classes are only recorded by name,
//! and the few it understands (`numpy` arrays and dtypes, `_codecs.encode`) are rebuilt from
//! their data.

use std::collections::HashMap;
use std::rc::Rc;

/// A parse failure: the byte offset in the pickle and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PickleError {
    /// Offset of the opcode (or data) that failed.
    pub(crate) offset: u64,
    /// What is wrong.
    pub(crate) what: String,
    /// Whether the input simply ended too early.
    pub(crate) truncated: bool,
}

/// A numpy array rebuilt from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NdArray {
    /// Type code without byte order: "u1", "i8", "f4", ...
    pub(crate) descr: String,
    /// Whether multi-byte elements are big-endian.
    pub(crate) big_endian: bool,
    /// Dimensions.
    pub(crate) shape: Vec<usize>,
    /// Whether the data is column-major.
    pub(crate) fortran: bool,
    /// The raw element bytes.
    pub(crate) data: Rc<[u8]>,
}

impl NdArray {
    /// Elements as `i64`, for integer dtypes; `None` for other dtypes or a size mismatch.
    pub(crate) fn to_i64(&self) -> Option<Vec<i64>> {
        let (signed, size) = match self.descr.as_str() {
            "u1" | "b1" => (false, 1),
            "i1" => (true, 1),
            "u2" => (false, 2),
            "i2" => (true, 2),
            "u4" => (false, 4),
            "i4" => (true, 4),
            "u8" => (false, 8),
            "i8" => (true, 8),
            _ => return None,
        };
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if n.checked_mul(size) != Some(self.data.len()) {
            return None;
        }
        Some(
            self.data
                .chunks_exact(size)
                .map(|c| {
                    // `c` has `size` <= 8 bytes: they fill the low bytes, least significant
                    // first, and a negative signed value is sign-extended over the rest.
                    let mut b = [0u8; 8];
                    let most_significant = if self.big_endian {
                        b.iter_mut().zip(c.iter().rev()).for_each(|(d, &v)| *d = v);
                        c.first()
                    } else {
                        b.iter_mut().zip(c).for_each(|(d, &v)| *d = v);
                        c.last()
                    };
                    if signed && most_significant.is_some_and(|&v| v & 0x80 != 0) {
                        b.iter_mut().skip(size).for_each(|v| *v = 0xff);
                    }
                    u64::from_le_bytes(b) as i64
                })
                .collect(),
        )
    }
}

/// A value read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A byte string (Python 2 `str`, Python 3 `bytes`, `bytearray`).
    Bytes(Rc<[u8]>),
    /// A text string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in pickle order.
    Dict(Vec<(Value, Value)>),
    /// A numpy array.
    Array(NdArray),
    /// A numpy dtype: type code and big-endianness.
    Dtype(String, bool),
    /// A reference to a global (class or function) by module and name.
    Global(String, String),
    /// Any other object: the class or function that made it, by module and name.
    Object(String, String),
}

impl Value {
    /// The value of `key` in a dict (keys compared as text or bytes).
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Str(s) if s == key => Some(v),
                Value::Bytes(b) if &b[..] == key.as_bytes() => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub(crate) fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Str(_) => "str".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Array(a) => format!("numpy array {} {:?}", a.descr, a.shape),
            Value::Dtype(d, _) => format!("dtype {d}"),
            Value::Global(m, n) => format!("global {m}.{n}"),
            Value::Object(m, n) => format!("object made by {m}.{n}"),
        }
    }
}

type Id = usize;

#[derive(Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Rc<[u8]>),
    Str(String),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String, String),
    /// The result of calling `callable` with `args`, with `state` set by BUILD.
    Object {
        callable: Id,
        args: Id,
        state: Option<Id>,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, offset: usize, what: impl Into<String>) -> PickleError {
        PickleError {
            offset: offset as u64,
            what: what.into(),
            truncated: false,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| Some((end, self.buf.get(self.pos..end)?))) {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            _ => Err(PickleError {
                offset: self.pos as u64,
                what: format!(
                    "needs {n} more bytes, only {} left",
                    self.buf.len() - self.pos
                ),
                truncated: true,
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        let [b] = self.le::<1>()?;
        Ok(b)
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    fn len4(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }

    fn len8(&mut self) -> Result<usize, PickleError> {
        let at = self.pos;
        let n = u64::from_le_bytes(self.le::<8>()?);
        usize::try_from(n).map_err(|_| self.err(at, format!("length {n} too large")))
    }

    /// A line without its newline (protocol 0 arguments), as bytes.
    fn line_bytes(&mut self) -> Result<&'a [u8], PickleError> {
        let start = self.pos;
        // `pos` never passes the end (`take` and this keep it in range): empty is only defensive.
        let rest = self.buf.get(start..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError {
                offset: start as u64,
                what: "text argument without newline".into(),
                truncated: true,
            });
        };
        self.pos = start + nl + 1;
        let (line, _newline) = rest.split_at(nl);
        Ok(line)
    }

    /// A text line without its newline (protocol 0 arguments).
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let start = self.pos;
        let b = self.line_bytes()?;
        std::str::from_utf8(b).map_err(|_| self.err(start, "text argument is not UTF-8"))
    }
}

struct Machine {
    objs: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack depths at each open MARK. The top one is a fence: no opcode may take items below
    /// it except those that close the MARK (as CPython's unpickler).
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

impl Machine {
    fn push(&mut self, o: Obj) {
        self.objs.push(o);
        self.stack.push(self.objs.len() - 1);
    }

    /// The stack depth below which the innermost open MARK protects the items.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// The top item, `None` when the stack above the fence is empty.
    fn top(&self) -> Option<Id> {
        (self.stack.len() > self.fence())
            .then(|| self.stack.last().copied())
            .flatten()
    }

    /// Pop the top item, `None` when the stack above the fence is empty.
    fn pop(&mut self) -> Option<Id> {
        if self.stack.len() > self.fence() {
            self.stack.pop()
        } else {
            None
        }
    }

    /// Pop the top `n` items (in stack order), `None` when fewer are above the fence.
    fn pop_n(&mut self, n: usize) -> Option<Vec<Id>> {
        let start = self.stack.len().checked_sub(n)?;
        (start >= self.fence()).then(|| self.stack.split_off(start))
    }

    /// Close the innermost MARK: the items pushed since, `None` without a MARK. The fence keeps
    /// the MARK's depth within the stack, so this never reaches below it.
    fn pop_mark(&mut self) -> Option<Vec<Id>> {
        let k = self.marks.pop()?;
        let k = k.min(self.stack.len());
        Some(self.stack.split_off(k))
    }
}

/// Upper bound on the values one pickle may expand to (each value counts 1, each text byte
/// 1): shared references (memo gets) can otherwise repeat one object exponentially often.
fn expansion_budget(input_len: usize) -> usize {
    input_len.saturating_mul(16).saturating_add(1 << 20)
}

/// Parse one pickle (up to its STOP opcode).
pub(crate) fn parse(buf: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { buf, pos: 0 };
    let mut m = Machine {
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        let underflow = |r: &Reader<'_>| r.err(at, format!("opcode 0x{op:02x}: stack underflow"));
        match op {
            b'.' => {
                let top = m.top().ok_or_else(|| underflow(&r))?;
                let mut budget = expansion_budget(buf.len());
                return convert(&m.objs, top, 0, &mut budget).map_err(|what| r.err(at, what));
            }
            0x80 => {
                let v = r.u8()?;
                if v > 5 {
                    return Err(r.err(at, format!("unsupported pickle protocol {v}")));
                }
            }
            0x95 => {
                r.len8()?; // FRAME: a length hint only
            }
            b'(' => m.marks.push(m.stack.len()),
            b'0' => {
                // POP at a MARK pops the MARK (protocol 0 writes this for recursive tuples).
                if m.pop().is_none() {
                    m.pop_mark().ok_or_else(|| underflow(&r))?;
                }
            }
            b'1' => {
                m.pop_mark()
                    .ok_or_else(|| r.err(at, "POP_MARK without MARK"))?;
            }
            b'2' => {
                let top = m.top().ok_or_else(|| underflow(&r))?;
                m.stack.push(top);
            }
            b'N' => m.push(Obj::None),
            0x88 => m.push(Obj::Bool(true)),
            0x89 => m.push(Obj::Bool(false)),
            b'J' => m.push(Obj::Int(i64::from(i32::from_le_bytes(r.le::<4>()?)))),
            b'K' => m.push(Obj::Int(i64::from(r.u8()?))),
            b'M' => m.push(Obj::Int(i64::from(u16::from_le_bytes(r.le::<2>()?)))),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    usize::from(r.u8()?)
                } else {
                    r.len4()?
                };
                let b = r.take(n)?;
                if n > 8 {
                    return Err(r.err(at, format!("integer of {n} bytes does not fit 64 bits")));
                }
                // n <= 8 bytes, least significant first, sign-extended over the rest.
                let mut full = [0u8; 8];
                full.iter_mut().zip(b).for_each(|(d, &v)| *d = v);
                if b.last().is_some_and(|&v| v & 0x80 != 0) {
                    full.iter_mut().skip(n).for_each(|v| *v = 0xff);
                }
                m.push(Obj::Int(i64::from_le_bytes(full)));
            }
            b'I' | b'L' => {
                let text = r.line()?;
                let t = text.trim_end_matches('L');
                let o = match t {
                    "00" if op == b'I' => Obj::Bool(false),
                    "01" if op == b'I' => Obj::Bool(true),
                    _ => Obj::Int(
                        t.parse()
                            .map_err(|_| r.err(at, format!("bad integer {text:?}")))?,
                    ),
                };
                m.push(o);
            }
            b'F' => {
                let text = r.line()?;
                let v = text
                    .trim()
                    .parse()
                    .map_err(|_| r.err(at, format!("bad float {text:?}")))?;
                m.push(Obj::Float(v));
            }
            b'G' => m.push(Obj::Float(f64::from_be_bytes(r.le::<8>()?))),
            b'S' => {
                let text = r.line_bytes()?;
                let b = unquote(text).ok_or_else(|| r.err(at, "bad quoted string"))?;
                m.push(Obj::Bytes(b.into()));
            }
            b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'U' | b'C' => usize::from(r.u8()?),
                    b'T' | b'B' => r.len4()?,
                    _ => r.len8()?,
                };
                m.push(Obj::Bytes(r.take(n)?.into()));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    0x8c => usize::from(r.u8()?),
                    b'X' => r.len4()?,
                    _ => r.len8()?,
                };
                let b = r.take(n)?;
                let s = std::str::from_utf8(b).map_err(|_| r.err(at, "string is not UTF-8"))?;
                m.push(Obj::Str(s.to_owned()));
            }
            b'V' => {
                let text = r.line_bytes()?;
                let s = raw_unicode_unescape(text)
                    .ok_or_else(|| r.err(at, "bad raw-unicode-escape string"))?;
                m.push(Obj::Str(s));
            }
            b']' => m.push(Obj::List(Vec::new())),
            b')' => m.push(Obj::Tuple(Vec::new())),
            b'}' => m.push(Obj::Dict(Vec::new())),
            0x8f => m.push(Obj::List(Vec::new())), // EMPTY_SET, kept as a list
            b'l' | b't' | b'd' | 0x91 => {
                let items = m
                    .pop_mark()
                    .ok_or_else(|| r.err(at, "container without MARK"))?;
                let o = match op {
                    b'd' => Obj::Dict(pairs(&items).ok_or_else(|| r.err(at, "odd dict items"))?),
                    b't' => Obj::Tuple(items),
                    _ => Obj::List(items),
                };
                m.push(o);
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let items = m.pop_n(n).ok_or_else(|| underflow(&r))?;
                m.push(Obj::Tuple(items));
            }
            b'a' | b'e' | 0x90 => {
                let items = if op == b'a' {
                    vec![m.pop().ok_or_else(|| underflow(&r))?]
                } else {
                    m.pop_mark()
                        .ok_or_else(|| r.err(at, "APPENDS without MARK"))?
                };
                let target = m.top().ok_or_else(|| underflow(&r))?;
                match m.objs.get_mut(target) {
                    Some(Obj::List(l)) => l.extend(items),
                    _ => return Err(r.err(at, "append to something that is not a list")),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    m.pop_n(2).ok_or_else(|| underflow(&r))?
                } else {
                    m.pop_mark()
                        .ok_or_else(|| r.err(at, "SETITEMS without MARK"))?
                };
                let p = pairs(&items).ok_or_else(|| r.err(at, "odd dict items"))?;
                let target = m.top().ok_or_else(|| underflow(&r))?;
                match m.objs.get_mut(target) {
                    Some(Obj::Dict(d)) => d.extend(p),
                    _ => return Err(r.err(at, "set item on something that is not a dict")),
                }
            }
            b'c' => {
                let module = r.line()?.to_owned();
                let name = r.line()?.to_owned();
                m.push(Obj::Global(module, name));
            }
            0x93 => {
                let [module, name] = m.pop_n(2).ok_or_else(|| underflow(&r))?[..] else {
                    return Err(underflow(&r));
                };
                match (m.objs.get(module), m.objs.get(name)) {
                    (Some(Obj::Str(a)), Some(Obj::Str(b))) => {
                        let g = Obj::Global(a.clone(), b.clone());
                        m.push(g);
                    }
                    _ => return Err(r.err(at, "STACK_GLOBAL needs two strings")),
                }
            }
            b'R' | 0x81 | 0x92 => {
                if op == 0x92 {
                    m.pop().ok_or_else(|| underflow(&r))?; // kwargs
                }
                let [callable, args] = m.pop_n(2).ok_or_else(|| underflow(&r))?[..] else {
                    return Err(underflow(&r));
                };
                m.push(Obj::Object {
                    callable,
                    args,
                    state: None,
                });
            }
            b'b' => {
                let state = m.pop().ok_or_else(|| underflow(&r))?;
                let target = m.top().ok_or_else(|| underflow(&r))?;
                match m.objs.get_mut(target) {
                    Some(Obj::Object { state: s, .. }) => *s = Some(state),
                    _ => return Err(r.err(at, "BUILD on something that is not an object")),
                }
            }
            b'p' | b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'p' => {
                        let t = r.line()?;
                        t.parse()
                            .map_err(|_| r.err(at, format!("bad memo key {t:?}")))?
                    }
                    b'q' => u64::from(r.u8()?),
                    b'r' => u64::from(u32::from_le_bytes(r.le::<4>()?)),
                    _ => m.memo.len() as u64,
                };
                let top = m.top().ok_or_else(|| underflow(&r))?;
                m.memo.insert(key, top);
            }
            b'g' | b'h' | b'j' => {
                let key = match op {
                    b'g' => {
                        let t = r.line()?;
                        t.parse()
                            .map_err(|_| r.err(at, format!("bad memo key {t:?}")))?
                    }
                    b'h' => u64::from(r.u8()?),
                    _ => u64::from(u32::from_le_bytes(r.le::<4>()?)),
                };
                let id = *m
                    .memo
                    .get(&key)
                    .ok_or_else(|| r.err(at, format!("memo key {key} was never stored")))?;
                m.stack.push(id);
            }
            _ => {
                return Err(r.err(
                    at,
                    format!("unsupported pickle opcode 0x{op:02x} (not a plain data pickle)"),
                ));
            }
        }
    }
}

fn pairs(items: &[Id]) -> Option<Vec<(Id, Id)>> {
    let (pairs, []) = items.as_chunks::<2>() else {
        return None;
    };
    Some(pairs.iter().map(|&[k, v]| (k, v)).collect())
}

const MAX_DEPTH: usize = 64;

/// The value of object `id`, spending one unit of `budget` per value and one per text byte.
fn convert(objs: &[Obj], id: Id, depth: usize, budget: &mut usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("pickle nests too deep (or refers to itself)".into());
    }
    let obj = objs
        .get(id)
        .ok_or_else(|| format!("reference to object {id} that does not exist"))?;
    let cost = match obj {
        Obj::Str(s) => 1 + s.len(),
        Obj::Global(a, b) => 1 + a.len() + b.len(),
        _ => 1,
    };
    *budget = budget.checked_sub(cost).ok_or_else(|| {
        "pickle expands to far more values than its size (a shared object repeated too often)"
            .to_string()
    })?;
    let mut c = |i: Id| convert(objs, i, depth + 1, budget);
    Ok(match obj {
        Obj::None => Value::None,
        Obj::Bool(b) => Value::Bool(*b),
        Obj::Int(i) => Value::Int(*i),
        Obj::Float(f) => Value::Float(*f),
        Obj::Bytes(b) => Value::Bytes(b.clone()),
        Obj::Str(s) => Value::Str(s.clone()),
        Obj::List(l) => Value::List(l.iter().map(|&i| c(i)).collect::<Result<_, _>>()?),
        Obj::Tuple(l) => Value::Tuple(l.iter().map(|&i| c(i)).collect::<Result<_, _>>()?),
        Obj::Dict(d) => Value::Dict(
            d.iter()
                .map(|&(k, v)| Ok((c(k)?, c(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Obj::Global(a, b) => Value::Global(a.clone(), b.clone()),
        Obj::Object {
            callable,
            args,
            state,
        } => {
            let Value::Global(module, name) = c(*callable)? else {
                return Err("object made by something that is not a global".into());
            };
            let args = c(*args)?;
            let state = state.map(&mut c).transpose()?;
            rebuild(&module, &name, args, state)?
        }
    })
}

/// Rebuild the objects this reader understands; others become [`Value::Object`].
fn rebuild(module: &str, name: &str, args: Value, state: Option<Value>) -> Result<Value, String> {
    let numpy = module == "numpy" || module.starts_with("numpy.");
    match (numpy, name) {
        (true, "dtype") => {
            let Value::Tuple(a) = &args else {
                return Err("numpy dtype without argument tuple".into());
            };
            let descr = match a.first() {
                Some(Value::Str(s)) => s.clone(),
                Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => return Err("numpy dtype without type code".into()),
            };
            let (order, code) = split_order(&descr);
            let mut big = order == Some('>');
            if let Some(Value::Tuple(s)) = &state
                && let Some(o) = s.get(1)
            {
                let o = match o {
                    Value::Str(s) => s.clone(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                big = o == ">";
            }
            Ok(Value::Dtype(code.to_owned(), big))
        }
        (true, "_reconstruct") => {
            let Some(Value::Tuple(s)) = state else {
                return Err("numpy array without state".into());
            };
            // (version, shape, dtype, is_fortran, data) or without the version
            let ([_, shape, dtype, fortran, data] | [shape, dtype, fortran, data]) = s.as_slice()
            else {
                return Err(format!("numpy array state of {} items", s.len()));
            };
            array(shape, dtype, fortran, data)
        }
        (true, "_frombuffer") => {
            // (buffer, dtype, shape, order)
            let Value::Tuple(a) = &args else {
                return Err("numpy _frombuffer without argument tuple".into());
            };
            let [data, dtype, shape, order] = &a[..] else {
                return Err(format!("numpy _frombuffer with {} arguments", a.len()));
            };
            let fortran = Value::Bool(matches!(order, Value::Str(o) if o == "F"));
            array(shape, dtype, &fortran, data)
        }
        (false, "encode") if module == "_codecs" => {
            // Python 3 writes bytes for protocol 2 as _codecs.encode(latin-1 text, "latin1").
            let Value::Tuple(a) = &args else {
                return Err("_codecs.encode without argument tuple".into());
            };
            match &a[..] {
                [Value::Str(s)] => Ok(Value::Bytes(s.as_bytes().into())),
                [Value::Str(s), Value::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                    let bytes = s
                        .chars()
                        .map(|ch| u8::try_from(u32::from(ch)))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| "latin1 text with a character above 255".to_string())?;
                    Ok(Value::Bytes(bytes.into()))
                }
                _ => Err("unsupported _codecs.encode arguments".into()),
            }
        }
        (false, "bytearray" | "bytes") if module == "builtins" || module == "__builtin__" => {
            match args {
                Value::Tuple(a) if a.is_empty() => Ok(Value::Bytes(Rc::from(Vec::new()))),
                Value::Tuple(a) => match a.into_iter().next() {
                    Some(Value::Bytes(b)) => Ok(Value::Bytes(b)),
                    _ => Err("unsupported bytearray arguments".into()),
                },
                _ => Err("unsupported bytearray arguments".into()),
            }
        }
        _ => Ok(Value::Object(module.to_owned(), name.to_owned())),
    }
}

fn split_order(descr: &str) -> (Option<char>, &str) {
    match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (Some(c), &descr[1..]),
        _ => (None, descr),
    }
}

fn array(shape: &Value, dtype: &Value, fortran: &Value, data: &Value) -> Result<Value, String> {
    let Value::Tuple(dims) = shape else {
        return Err("numpy array shape is not a tuple".into());
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Value::Int(i) => usize::try_from(*i).map_err(|_| format!("negative dimension {i}")),
            _ => Err("numpy array dimension is not an integer".into()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The element count must fit in memory: without zero dimensions (so that every partial
    // product a reader takes fits too) and at most one element per data byte.
    let elements = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("numpy array shape {shape:?} overflows"))?;
    let elements = if shape.contains(&0) { 0 } else { elements };
    let Value::Dtype(descr, big_endian) = dtype else {
        return Err(format!("numpy array dtype is a {}", dtype.kind()));
    };
    let fortran = match fortran {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        _ => false,
    };
    let Value::Bytes(data) = data else {
        return Err(format!(
            "numpy array data is a {} (object arrays are not supported)",
            data.kind()
        ));
    };
    if elements > data.len() {
        return Err(format!(
            "numpy array shape {shape:?} needs more than its {} data bytes",
            data.len()
        ));
    }
    Ok(Value::Array(NdArray {
        descr: descr.clone(),
        big_endian: *big_endian,
        shape,
        fortran,
        data: data.clone(),
    }))
}

/// Decode a protocol 0 quoted string: `'...'` or `"..."` with Python escapes.
fn unquote(t: &[u8]) -> Option<Vec<u8>> {
    let (&open, rest) = t.split_first()?;
    let (&close, body) = rest.split_last()?;
    if open != close || !(open == b'\'' || open == b'"') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Some(out)
}

/// Decode Python's raw-unicode-escape (protocol 0 `UNICODE`): `\uXXXX` and `\UXXXXXXXX`
/// escapes; every other byte is a Latin-1 character.
fn raw_unicode_unescape(t: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(t.len());
    let mut i = 0;
    while let Some(&b) = t.get(i) {
        let escape = match (b, t.get(i + 1)) {
            (b'\\', Some(b'u')) => Some(4),
            (b'\\', Some(b'U')) => Some(8),
            _ => None,
        };
        if let Some(n) = escape {
            let hex = std::str::from_utf8(t.get(i + 2..i + 2 + n)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            i += 2 + n;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python2_style_numpy_dict() {
        // What cPickle (protocol 2) writes for {'data': np.array([[1,2],[3,4]], 'uint8'),
        // 'labels': [5, 300]}, written by hand.
        let mut p = vec![0x80, 2, b'}', b'q', 1, b'(', b'U', 4];
        p.extend_from_slice(b"data");
        p.extend_from_slice(b"q\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01K\x02K\x02\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x04\x01\x02\x03\x04tbU\x06labels]q\x08(K\x05M\x2c\x01eu.");
        let v = parse(&p).expect("parses");
        let Some(Value::Array(a)) = v.get("data") else {
            panic!("no array: {v:?}");
        };
        assert_eq!(a.shape, vec![2, 2]);
        assert_eq!(a.descr, "u1");
        assert_eq!(&a.data[..], &[1, 2, 3, 4]);
        assert_eq!(
            v.get("labels"),
            Some(&Value::List(vec![Value::Int(5), Value::Int(300)]))
        );
    }

    #[test]
    fn truncation_is_reported_with_offset() {
        let p = [0x80, 2, b'U', 10, b'a', b'b'];
        let e = parse(&p).expect_err("truncated");
        assert!(e.truncated);
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn code_running_opcodes_are_refused() {
        let e = parse(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.")
            .map(|v| v.kind());
        // os.system is never called: it is only recorded as an object.
        assert_eq!(e, Ok("object made by os.system".to_string()));
        assert!(parse(b"\x80\x02\xffN.").is_err());
    }

    #[test]
    fn popping_past_a_mark_is_an_error_not_a_panic() {
        // None, MARK, POP (pops the MARK, as CPython does), LIST: no MARK left.
        let e = parse(b"N(0l.").expect_err("malformed");
        assert_eq!(e.offset, 3);
        assert!(!e.truncated);
        assert!(e.what.contains("MARK"), "{}", e.what);
        // items below an open MARK are out of reach of every other opcode
        for p in [
            &b"N(a."[..],
            b"]((e.",
            b"}NN(s.",
            b"N(\x85.",
            b"N(2.",
            b"N(p0\n.",
            b"N(b.",
            b"NN(R.",
            b"N(.",
        ] {
            let e = parse(p).expect_err("malformed");
            assert!(e.what.contains("underflow"), "{p:?}: {}", e.what);
        }
        // protocol 0's recursive tuples: POP the items, then POP the MARK
        assert_eq!(parse(b"N(NN000."), Ok(Value::None));
    }

    #[test]
    fn shared_references_cannot_expand_exponentially() {
        // t0 = (None, None); t1 = (t0, t0); ... 60 levels: 2^60 values if expanded naively
        let mut p = b"NN\x86\x94".to_vec();
        for i in 0..60u8 {
            p.extend_from_slice(&[b'h', i, b'h', i, 0x86, 0x94]);
        }
        p.push(b'.');
        let e = parse(&p).expect_err("refused");
        assert!(e.what.contains("expands"), "{}", e.what);
    }

    #[test]
    fn array_shapes_must_fit_their_data() {
        // numpy.core.multiarray._reconstruct with state (shape, dtype, fortran, data)
        let array = |shape: &[u8]| {
            let mut p = b"cnumpy.core.multiarray\n_reconstruct\n)R(".to_vec();
            p.extend_from_slice(shape);
            p.extend_from_slice(b"cnumpy\ndtype\n(Vu1\ntR\x89C\x04\x01\x02\x03\x04tb.");
            parse(&p)
        };
        assert!(matches!(array(b"K\x02K\x02\x86"), Ok(Value::Array(_))));
        let e = array(b"K\x02K\x03\x86").expect_err("too small");
        assert!(e.what.contains("needs more"), "{}", e.what);
        let huge = b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40";
        let mut shape = huge.to_vec();
        shape.extend_from_slice(huge);
        shape.push(0x86);
        let e = array(&shape).expect_err("overflows");
        assert!(e.what.contains("overflows"), "{}", e.what);
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(unquote(br"'a\x00\n\'b'"), Some(b"a\x00\n'b".to_vec()));
        assert_eq!(
            raw_unicode_unescape(br"x\u0101y\xff"),
            Some("x\u{101}y\\xff".into())
        );
        assert_eq!(raw_unicode_unescape(b"\xe9"), Some("\u{e9}".into()));
    }

    #[test]
    fn signed_ints_from_arrays() {
        let a = NdArray {
            descr: "i2".into(),
            big_endian: false,
            shape: vec![2],
            fortran: false,
            data: Rc::from(vec![0xff, 0xff, 0x02, 0x01]),
        };
        assert_eq!(a.to_i64(), Some(vec![-1, 258]));
    }
}
