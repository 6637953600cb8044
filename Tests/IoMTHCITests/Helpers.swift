/// "01 0c 03" / "010c03" → bytes (test fixtures only).
func hex(_ s: String) -> [UInt8] {
    let c = Array(s.filter { !$0.isWhitespace })
    return stride(from: 0, to: c.count, by: 2).map { UInt8(String(c[$0...$0 + 1]), radix: 16)! }
}
