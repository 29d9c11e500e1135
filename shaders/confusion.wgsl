// Label x prediction counts per item. Mirrors src/metrics/confusion.rs.
// The diagonal (agreeing pixels, the common case) is counted in workgroup
// memory and flushed once per workgroup; disagreements go straight to the
// item's matrix in global memory, where they are rare enough not to contend.
// Classes beyond PRIVATE_CLASSES use global atomics for the diagonal too.

const PRIVATE_CLASSES: u32 = 1024u;

var<workgroup> wg_diag: array<atomic<u32>, 1024>;

fn confusion_clear(lid: u32) {
    for (var c = lid; c < PRIVATE_CLASSES; c += WG) {
        atomicStore(&wg_diag[c], 0u);
    }
}

fn confusion_add(slot: u32, label: u32, pred: u32) {
    let c = P.classes;
    if (label == pred && label < PRIVATE_CLASSES) {
        atomicAdd(&wg_diag[label], 1u);
    } else {
        atomicAdd(&confusion[(slot * c + label) * c + pred], 1u);
    }
}

fn confusion_flush(slot: u32, lid: u32) {
    let c = P.classes;
    for (var k = lid; k < min(c, PRIVATE_CLASSES); k += WG) {
        let v = atomicLoad(&wg_diag[k]);
        if (v > 0u) { atomicAdd(&confusion[(slot * c + k) * c + k], v); }
    }
}
