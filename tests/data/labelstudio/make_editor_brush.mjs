// The brush RLE of tests/data/labelstudio/editor_brush.json, written by
// @thi.ng/rle-pack's encode (the encoder Label Studio's editor calls on the
// canvas's RGBA pixels, `encode(data, data.length)`).
import { encode } from "@thi.ng/rle-pack";
const h = 6, w = 8;
const rgba = new Uint8Array(h * w * 4);
for (let y = 0; y < h; y++) {
  for (let x = 0; x < w; x++) {
    const p = 4 * (y * w + x);
    let a = 0;
    if (y >= 1 && y <= 4 && x >= 2 && x <= 6) a = 255; // the region
    if (y === 5 && x === 2) a = 128; // an anti-aliased edge pixel
    if (a) rgba.set([255, 0, (x * 40) & 255, a], p); // the label's colour, varying blue
  }
}
console.log(JSON.stringify(Array.from(encode(rgba, rgba.length))));
