import IoMTHCI

/// Whether `address` is a resolvable private address generated from `irk`,
/// Core v5.4 Vol 6 Part B 1.3.2.3: `prand` is the most significant 24 bits, `hash` the least
/// significant 24 bits, and the address resolves when `ah(irk, prand) == hash`.
///
/// `irk` is 16 octets MSB first (toolbox order, as `PairingResult.peerIRK` holds it).
/// `BDAddress.bytes` is LSB first, so `prand` is `bytes[3...5]` reversed and `hash` `bytes[0...2]`
/// reversed. Returns false for any address that is not resolvable-private (top bits `01`) and
/// for an IRK of the wrong length.
public func resolvePrivateAddress(_ address: BDAddress, irk: [UInt8]) -> Bool {
    guard address.bytes.count == 6, address.randomSubtype == .resolvablePrivate else { return false }
    let prand = SMPToolbox.msb(address.bytes[3..<6])
    let hash = SMPToolbox.msb(address.bytes[0..<3])
    guard let computed = try? SMPToolbox.ah(irk: irk, r: prand) else { return false }
    return computed == hash
}

/// A resolvable private address from `irk` (16 octets MSB first) and `prand` (3 octets MSB first),
/// Vol 6 Part B 1.3.2.2: the address, MSB first, is `prand || ah(irk, prand)`. The two most
/// significant bits of `prand` are forced to `01`. Meant for tests and simulators.
public func makeResolvablePrivateAddress(irk: [UInt8], prand: [UInt8]) throws(SMPToolboxError) -> BDAddress {
    try SMPToolbox.check(prand, 3, "prand")
    var p = prand
    p[0] = (p[0] & 0x3F) | 0x40
    let hash = try SMPToolbox.ah(irk: irk, r: p)
    guard let address = BDAddress(wireBytes: SMPToolbox.lsb(p + hash)) else {
        throw SMPToolboxError(parameter: "prand", expected: 3, actual: prand.count)
    }
    return address
}
