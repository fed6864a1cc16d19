//! Reader for torch's legacy (pre-1.6, non-zip) `torch.save` format.
//!
//! Layout, one item after another:
//! 1. pickle: the magic number `0x1950a86a20f9469cfc6c`;
//! 2. pickle: the protocol version, `1001`;
//! 3. pickle: sys info (`{'little_endian': True, 'type_sizes': …}`);
//! 4. pickle: the object itself — here the state dict, whose tensors are
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` and
//!    whose storages are persistent ids
//!    `('storage', torch.FloatStorage, key, location, numel[, view])`;
//! 5. pickle: the list of storage keys, in the order their data follows;
//! 6. per storage: element count as `u64` LE, then the raw LE elements.
//!
//! Everything read from the file is checked (counts, bounds, strides) before
//! it is used, so malformed input yields a [`ConvertError`], never a panic or
//! an absurd allocation.

use std::collections::{BTreeMap, HashMap};

use super::pickle::{self, Obj, ObjId, Pickle};
use super::{ConvertError, Tensor};

/// The magic number that opens every legacy torch file.
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The only legacy protocol version torch ever wrote.
const PROTOCOL_VERSION: i128 = 1001;
/// How zip-format checkpoints (torch >= 1.6 default) start.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Element type of a storage, from its `torch.XStorage` class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Decodes little-endian elements to `f32`. Non-float storages (in
    /// practice BatchNorm's `num_batches_tracked` counters) are converted
    /// with `as`, which is exact for the small values they hold.
    fn decode(self, raw: &[u8]) -> Vec<f32> {
        let n = self.size();
        let chunks = raw.chunks_exact(n);
        match self {
            Self::F32 => chunks.map(|c| f32::from_le_bytes(arr(c))).collect(),
            Self::F64 => chunks.map(|c| f64::from_le_bytes(arr(c)) as f32).collect(),
            Self::F16 => chunks
                .map(|c| f16_to_f32(u16::from_le_bytes(arr(c))))
                .collect(),
            Self::BF16 => chunks
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes(arr(c))) << 16))
                .collect(),
            Self::I64 => chunks.map(|c| i64::from_le_bytes(arr(c)) as f32).collect(),
            Self::I32 => chunks.map(|c| i32::from_le_bytes(arr(c)) as f32).collect(),
            Self::I16 => chunks
                .map(|c| f32::from(i16::from_le_bytes(arr(c))))
                .collect(),
            Self::I8 => chunks
                .map(|c| f32::from(i8::from_le_bytes(arr(c))))
                .collect(),
            Self::U8 | Self::Bool => raw.iter().map(|&b| f32::from(b)).collect(),
        }
    }
}

/// Copies a chunk produced by `chunks_exact(N)` into an array.
fn arr<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(chunk);
    out
}

/// IEEE 754 binary16 to binary32 (exact; subnormals, infinities and NaN kept).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac * 2^-24, exactly representable in f32.
            let v = frac as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// A storage as described by a persistent id.
#[derive(Debug, Clone, Copy)]
struct StorageInfo {
    dtype: DType,
    numel: usize,
}

/// A tensor's view onto a storage, from `_rebuild_tensor(_v2)`.
#[derive(Debug)]
struct TensorView {
    storage_key: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn format_err(msg: impl Into<String>) -> ConvertError {
    ConvertError::Format(msg.into())
}

/// Parses one pickle at `*pos` and advances `*pos` past it.
fn next_pickle(bytes: &[u8], pos: &mut usize, what: &str) -> Result<Pickle, ConvertError> {
    let rest = bytes
        .get(*pos..)
        .ok_or_else(|| format_err(format!("{what}: offset {pos} beyond end of file")))?;
    let (p, used) = pickle::parse(rest).map_err(|e| match e {
        ConvertError::Pickle(msg) => {
            ConvertError::Pickle(format!("{what} (file offset {pos}): {msg}"))
        }
        other => other,
    })?;
    *pos += used;
    Ok(p)
}

/// See [`super::read_legacy_checkpoint`].
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, ConvertError> {
    if bytes.starts_with(ZIP_MAGIC) {
        return Err(ConvertError::Unsupported(
            "zip-format torch checkpoint; only the legacy (non-zip) format is supported".into(),
        ));
    }
    let mut pos = 0;

    let magic = next_pickle(bytes, &mut pos, "magic number")?;
    if magic.get(magic.root())? != &Obj::Int(MAGIC) {
        return Err(format_err(
            "not a legacy torch checkpoint (bad magic number)",
        ));
    }
    let proto = next_pickle(bytes, &mut pos, "protocol version")?;
    match proto.get(proto.root())? {
        Obj::Int(PROTOCOL_VERSION) => {}
        Obj::Int(v) => {
            return Err(ConvertError::Unsupported(format!(
                "legacy protocol version {v} (expected {PROTOCOL_VERSION})"
            )));
        }
        other => {
            return Err(format_err(format!(
                "protocol version is a {}, not an int",
                pickle::kind(other)
            )));
        }
    }
    let sys_info = next_pickle(bytes, &mut pos, "sys info")?;
    check_sys_info(&sys_info)?;

    let state = next_pickle(bytes, &mut pos, "state dict")?;
    let (views, storages) = collect_views(&state)?;

    let keys_pickle = next_pickle(bytes, &mut pos, "storage key list")?;
    let mut data: HashMap<String, Vec<f32>> = HashMap::new();
    for &key_id in keys_pickle.sequence(keys_pickle.root(), "storage key list")? {
        let key = keys_pickle.str(key_id, "storage key")?;
        let info = storages.get(key).ok_or_else(|| {
            format_err(format!(
                "storage `{key}` is listed but no tensor uses it, so its element size is unknown"
            ))
        })?;
        let decoded = read_storage(bytes, &mut pos, key, *info)?;
        if data.insert(key.to_owned(), decoded).is_some() {
            return Err(format_err(format!("storage `{key}` is listed twice")));
        }
    }
    if pos != bytes.len() {
        return Err(format_err(format!(
            "{} unexpected bytes after the last storage",
            bytes.len() - pos
        )));
    }

    // Stride-0 views could expand a tiny storage into an enormous tensor; a
    // genuine checkpoint never materialises more elements than it has bytes.
    let mut budget = bytes.len();
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let storage = data.get(&view.storage_key).ok_or_else(|| {
            format_err(format!(
                "tensor `{name}` uses storage `{}`, which has no data in the file",
                view.storage_key
            ))
        })?;
        let tensor = materialise(&name, &view, storage, &mut budget)?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// Refuses big-endian files: storages would need byte swapping and torch
/// itself never wrote those in practice.
fn check_sys_info(p: &Pickle) -> Result<(), ConvertError> {
    let Obj::Dict(pairs) = p.get(p.root())? else {
        return Err(format_err("sys info is not a dict"));
    };
    for &(k, v) in pairs {
        if matches!(p.get(k)?, Obj::Str(s) if s == "little_endian")
            && p.get(v)? == &Obj::Bool(false)
        {
            return Err(ConvertError::Unsupported("big-endian checkpoint".into()));
        }
    }
    Ok(())
}

type Views = (Vec<(String, TensorView)>, HashMap<String, StorageInfo>);

/// Walks the state dict: name -> tensor view, and storage key -> storage info.
fn collect_views(p: &Pickle) -> Result<Views, ConvertError> {
    let Obj::Dict(pairs) = p.get(p.root())? else {
        return Err(format_err("the checkpoint's object is not a (state) dict"));
    };
    let mut views = Vec::with_capacity(pairs.len());
    let mut storages: HashMap<String, StorageInfo> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for &(k, v) in pairs {
        let name = p.str(k, "state dict key")?.to_owned();
        if !seen.insert(name.clone()) {
            return Err(format_err(format!("duplicate state dict key `{name}`")));
        }
        let (view, info) = tensor_view(p, v, &name)?;
        match storages.get(&view.storage_key) {
            Some(prev) if prev.dtype != info.dtype || prev.numel != info.numel => {
                return Err(format_err(format!(
                    "storage `{}` is described inconsistently (tensor `{name}`)",
                    view.storage_key
                )));
            }
            Some(_) => {}
            None => {
                storages.insert(view.storage_key.clone(), info);
            }
        }
        views.push((name, view));
    }
    Ok((views, storages))
}

/// Interprets `_rebuild_tensor_v2(storage, offset, size, stride, …)` (or the
/// older `_rebuild_tensor`, or either wrapped in `_rebuild_parameter`).
fn tensor_view(
    p: &Pickle,
    id: ObjId,
    name: &str,
) -> Result<(TensorView, StorageInfo), ConvertError> {
    let bad = |what: &str| format_err(format!("tensor `{name}`: {what}"));
    let Obj::Call { func, args } = p.get(id)? else {
        return Err(bad(&format!(
            "expected a rebuilt tensor, found a {}",
            pickle::kind(p.get(id)?)
        )));
    };
    let Obj::Global {
        module,
        name: fname,
    } = p.get(*func)?
    else {
        return Err(bad("callable is not a global"));
    };
    let args = p.sequence(*args, "rebuild arguments")?;
    match (module.as_str(), fname.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {}
        ("torch._utils", "_rebuild_parameter") => {
            // Parameter(data, requires_grad, hooks): the data is a plain
            // rebuilt tensor; recurse exactly one level.
            let &inner = args
                .first()
                .ok_or_else(|| bad("_rebuild_parameter without data"))?;
            if let Obj::Call { func, .. } = p.get(inner)?
                && matches!(p.get(*func)?, Obj::Global { name, .. } if name == "_rebuild_parameter")
            {
                return Err(bad("nested _rebuild_parameter"));
            }
            return tensor_view(p, inner, name);
        }
        (m, f) => {
            return Err(ConvertError::Unsupported(format!(
                "tensor `{name}` is rebuilt by {m}.{f}"
            )));
        }
    }
    if args.len() < 4 {
        return Err(bad("rebuild call has fewer than 4 arguments"));
    }
    let Obj::PersistentId(pid) = p.get(args[0])? else {
        return Err(bad("first argument is not a persistent storage id"));
    };
    let pid = p.sequence(*pid, "persistent id")?;
    if pid.len() < 5 || p.str(pid[0], "persistent id tag")? != "storage" {
        return Err(bad(
            "persistent id is not ('storage', class, key, location, numel, …)",
        ));
    }
    let Obj::Global { name: class, .. } = p.get(pid[1])? else {
        return Err(bad("storage class is not a global"));
    };
    let dtype = DType::from_storage_class(class).ok_or_else(|| {
        ConvertError::Unsupported(format!("tensor `{name}`: storage class {class}"))
    })?;
    let storage_key = p.str(pid[2], "storage key")?.to_owned();
    let numel = p.usize(pid[4], "storage size")?;
    if let Some(&view_meta) = pid.get(5)
        && p.get(view_meta)? != &Obj::None
    {
        return Err(ConvertError::Unsupported(format!(
            "tensor `{name}`: legacy storage views"
        )));
    }
    let offset = p.usize(args[1], "storage offset")?;
    let size = ints(p, args[2], "size")?;
    let stride = ints(p, args[3], "stride")?;
    if size.len() != stride.len() {
        return Err(bad(&format!(
            "size has {} dims but stride has {}",
            size.len(),
            stride.len()
        )));
    }
    Ok((
        TensorView {
            storage_key,
            offset,
            size,
            stride,
        },
        StorageInfo { dtype, numel },
    ))
}

fn ints(p: &Pickle, id: ObjId, what: &str) -> Result<Vec<usize>, ConvertError> {
    p.sequence(id, what)?
        .iter()
        .map(|&i| p.usize(i, what))
        .collect()
}

/// Reads one storage record (count + raw data) at `*pos`.
fn read_storage(
    bytes: &[u8],
    pos: &mut usize,
    key: &str,
    info: StorageInfo,
) -> Result<Vec<f32>, ConvertError> {
    let truncated = || format_err(format!("file truncated in storage `{key}`"));
    let header_end = pos.checked_add(8).ok_or_else(truncated)?;
    let header = bytes.get(*pos..header_end).ok_or_else(truncated)?;
    let count = u64::from_le_bytes(arr(header));
    if usize::try_from(count).ok() != Some(info.numel) {
        return Err(format_err(format!(
            "storage `{key}` holds {count} elements but its tensors declare {}",
            info.numel
        )));
    }
    let len = info
        .numel
        .checked_mul(info.dtype.size())
        .ok_or_else(truncated)?;
    let end = header_end.checked_add(len).ok_or_else(truncated)?;
    let raw = bytes.get(header_end..end).ok_or_else(truncated)?;
    *pos = end;
    Ok(info.dtype.decode(raw))
}

/// Gathers a (possibly strided) view into a contiguous row-major tensor,
/// after proving every index it will touch is inside the storage.
fn materialise(
    name: &str,
    view: &TensorView,
    storage: &[f32],
    budget: &mut usize,
) -> Result<Tensor, ConvertError> {
    let bad = |what: String| format_err(format!("tensor `{name}`: {what}"));
    let numel = view
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("element count overflows".into()))?;
    *budget = budget
        .checked_sub(numel)
        .ok_or_else(|| bad(format!("{numel} elements is more than the file can hold")))?;
    let shape = view.size.clone();
    if numel == 0 {
        return Ok(Tensor {
            shape,
            data: Vec::new(),
        });
    }
    let max_index = view
        .size
        .iter()
        .zip(&view.stride)
        .try_fold(view.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .ok_or_else(|| bad("index overflows".into()))?;
    if max_index >= storage.len() {
        return Err(bad(format!(
            "view reaches element {max_index} of a {}-element storage",
            storage.len()
        )));
    }
    Ok(Tensor {
        shape,
        data: gather(storage, view.offset, &view.size, &view.stride, numel),
    })
}

/// Row-major gather. Callers guarantee `numel > 0` and that
/// `offset + Σ (size[i]-1)·stride[i] < src.len()`, so indexing cannot fail.
fn gather(src: &[f32], offset: usize, size: &[usize], stride: &[usize], numel: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(numel);
    let Some((&inner_len, outer_size)) = size.split_last() else {
        out.push(src[offset]); // 0-d tensor
        return out;
    };
    let inner_stride = stride[size.len() - 1];
    let outer_stride = &stride[..size.len() - 1];
    let mut index = vec![0usize; outer_size.len()];
    let mut base = offset;
    loop {
        if inner_stride == 1 {
            out.extend_from_slice(&src[base..base + inner_len]);
        } else {
            out.extend((0..inner_len).map(|j| src[base + j * inner_stride]));
        }
        // Odometer over the outer dimensions, last one fastest.
        let mut d = outer_size.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            base += outer_stride[d];
            if index[d] < outer_size[d] {
                break;
            }
            base -= outer_stride[d] * outer_size[d];
            index[d] = 0;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a minimal legacy checkpoint: a name -> (shape, stride, offset,
    /// storage key) state dict over float storages with the given data.
    /// Mirrors what `torch.save(..., _use_new_zipfile_serialization=False)`
    /// emits, so the reader can be tested without the real 18 MB file.
    pub(crate) struct Fixture {
        pub tensors: Vec<FixtureTensor>,
        pub storages: Vec<(String, Vec<f32>)>,
    }

    /// One state-dict entry of a [`Fixture`].
    pub(crate) struct FixtureTensor {
        pub name: String,
        pub shape: Vec<usize>,
        pub stride: Vec<usize>,
        pub offset: usize,
        pub storage: String,
    }

    impl FixtureTensor {
        pub(crate) fn new(
            name: &str,
            shape: &[usize],
            stride: &[usize],
            offset: usize,
            storage: &str,
        ) -> Self {
            Self {
                name: name.into(),
                shape: shape.to_vec(),
                stride: stride.to_vec(),
                offset,
                storage: storage.into(),
            }
        }
    }

    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn int(out: &mut Vec<u8>, v: usize) {
        out.push(b'J');
        out.extend_from_slice(&(v as i32).to_le_bytes());
    }

    impl Fixture {
        pub(crate) fn to_bytes(&self) -> Vec<u8> {
            let mut b = vec![
                0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
            ];
            b.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
            b.extend_from_slice(&[0x80, 2, b'}', b'(']);
            unicode(&mut b, "little_endian");
            b.extend_from_slice(&[0x88, b'u', b'.']);
            // State dict.
            b.extend_from_slice(&[0x80, 2]);
            b.extend_from_slice(b"ccollections\nOrderedDict\nq\x00)R(");
            for t in &self.tensors {
                let numel = self
                    .storages
                    .iter()
                    .find(|(k, _)| *k == t.storage)
                    .map_or(0, |(_, d)| d.len());
                unicode(&mut b, &t.name);
                b.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
                unicode(&mut b, "storage");
                b.extend_from_slice(b"ctorch\nFloatStorage\n");
                unicode(&mut b, &t.storage);
                unicode(&mut b, "cpu");
                int(&mut b, numel);
                b.extend_from_slice(b"NtQ");
                int(&mut b, t.offset);
                b.push(b'(');
                t.shape.iter().for_each(|&d| int(&mut b, d));
                b.extend_from_slice(b"t(");
                t.stride.iter().for_each(|&d| int(&mut b, d));
                b.extend_from_slice(b"t\x89h\x00)RtR");
            }
            b.extend_from_slice(b"u.");
            // Storage keys, then data.
            b.extend_from_slice(&[0x80, 2, b']', b'(']);
            for (key, _) in &self.storages {
                unicode(&mut b, key);
            }
            b.extend_from_slice(b"e.");
            for (_, data) in &self.storages {
                b.extend_from_slice(&(data.len() as u64).to_le_bytes());
                data.iter()
                    .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
            }
            b
        }
    }

    fn sample() -> Fixture {
        Fixture {
            tensors: vec![
                // A 2x3 tensor stored transposed (column-major), like `_fc.weight`.
                FixtureTensor::new("w", &[2, 3], &[1, 2], 0, "s0"),
                // A 1-d slice with an offset into the same storage.
                FixtureTensor::new("b", &[2], &[1], 4, "s0"),
                FixtureTensor::new("scalar", &[], &[], 0, "s1"),
            ],
            storages: vec![
                ("s0".into(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
                ("s1".into(), vec![7.5]),
            ],
        }
    }

    #[test]
    fn reads_strided_views() {
        let t = read(&sample().to_bytes()).expect("valid fixture");
        assert_eq!(t.len(), 3);
        assert_eq!(t["w"].shape, vec![2, 3]);
        // element [i][j] = storage[i + 2j]
        assert_eq!(t["w"].data, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        assert_eq!(t["b"].data, vec![4.0, 5.0]);
        assert_eq!(t["scalar"].shape, Vec::<usize>::new());
        assert_eq!(t["scalar"].data, vec![7.5]);
    }

    #[test]
    fn out_of_bounds_view_is_an_error() {
        let mut f = sample();
        f.tensors[1].offset = 5; // offset 5 + 2 elements > 6
        let err = read(&f.to_bytes()).unwrap_err();
        assert!(matches!(err, ConvertError::Format(_)), "{err}");
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let good = sample().to_bytes();
        for len in 0..good.len() {
            assert!(
                read(&good[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(read(&trailing).is_err());
        // Deterministic pseudo-random garbage, and single-byte corruptions.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..200 {
            let junk: Vec<u8> = (0..(next() % 300)).map(|_| next() as u8).collect();
            assert!(read(&junk).is_err());
        }
        for _ in 0..2000 {
            let mut b = good.clone();
            let i = next() as usize % b.len();
            b[i] = next() as u8;
            let _ = read(&b); // may succeed if the byte was inert; must not panic
        }
        assert!(matches!(
            read(b"PK\x03\x04rest"),
            Err(ConvertError::Unsupported(_))
        ));
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
