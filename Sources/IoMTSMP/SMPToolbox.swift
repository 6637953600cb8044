import Crypto
import _CryptoExtras

/// An input of the wrong length was given to a toolbox function.
public struct SMPToolboxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The parameter name, e.g. `"irk"` or `"u"`.
    public var parameter: String
    public var expected: Int
    public var actual: Int
    public init(parameter: String, expected: Int, actual: Int) {
        self.parameter = parameter
        self.expected = expected
        self.actual = actual
    }
    public var description: String {
        "SMP toolbox: parameter '\(parameter)' must be \(expected) octet(s), got \(actual)"
    }
}

/// The LE Secure Connections and legacy cryptographic toolbox, Core v5.4 Vol 3 Part H 2.2.
///
/// ## Byte order (the one place it is described)
/// Every input and output of this enum is **most-significant octet first**: the order in which
/// Core v5.4 Vol 3 Part H Appendix D and 2.2.3/2.2.4 print their sample values, and the order in
/// which AES and AES-CMAC consume a block/message. SMP PDUs and HCI carry the same values
/// **least-significant octet first** (Vol 3 Part H 3.1), so a value taken from a PDU field
/// (keys, randoms, confirm values, public key coordinates, pairing request/response octets as
/// used by `c1`) is reversed before it enters the toolbox and a toolbox output is reversed
/// before it goes into a PDU or an HCI command. `PairingInitiator` does those reversals with
/// `SMPToolbox.msb(_:)`/`lsb(_:)`; nothing else in this module converts.
public enum SMPToolbox {
    /// Reverse octet order (LSB-first wire value → MSB-first toolbox value).
    public static func msb(_ wire: some Collection<UInt8>) -> [UInt8] { Array(wire.reversed()) }
    /// Reverse octet order (MSB-first toolbox value → LSB-first wire value).
    public static func lsb(_ value: some Collection<UInt8>) -> [UInt8] { Array(value.reversed()) }

    static func check(_ value: [UInt8], _ count: Int, _ name: String) throws(SMPToolboxError) {
        guard value.count == count else { throw SMPToolboxError(parameter: name, expected: count, actual: value.count) }
    }

    static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = a
        for i in 0..<min(a.count, b.count) { out[i] ^= b[i] }
        return out
    }

    /// Security function `e`: AES-128 encryption of one 16-octet block, Vol 3 Part H 2.2.1.
    /// `key`, `plaintext` and the result are MSB first (the natural AES byte order, FIPS-197).
    public static func e(key: [UInt8], plaintext: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(key, 16, "key")
        try check(plaintext, 16, "plaintext")
        var block = plaintext
        do {
            try AES.permute(&block, key: SymmetricKey(data: key))
        } catch {
            // Unreachable with a 16-octet key and block; reported as a key-length problem.
            throw SMPToolboxError(parameter: "key", expected: 16, actual: key.count)
        }
        return block
    }

    /// AES-CMAC with a 128-bit key (RFC 4493), Vol 3 Part H 2.2.5, via swift-crypto's `AES.CMAC`.
    /// `key`, `message` and the 16-octet MAC are MSB first (the message is consumed from its first
    /// octet, as RFC 4493 prints it).
    public static func aesCMAC(key: [UInt8], message: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(key, 16, "key")
        do {
            var mac = try AES.CMAC(key: SymmetricKey(data: key))
            message.withUnsafeBytes { mac.update(bufferPointer: $0) }
            return Array(mac.finalize())
        } catch {
            throw SMPToolboxError(parameter: "key", expected: 16, actual: key.count)
        }
    }

    /// Random address hash `ah(k, r) = e(k, padding || r) mod 2^24`, Vol 3 Part H 2.2.2.
    /// `irk` 16 octets, `r` (prand) 3 octets, result 3 octets; all MSB first.
    public static func ah(irk: [UInt8], r: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(irk, 16, "irk")
        try check(r, 3, "r")
        let out = try e(key: irk, plaintext: [UInt8](repeating: 0, count: 13) + r)
        return Array(out[13..<16])
    }

    /// Legacy confirm value generation `c1`, Vol 3 Part H 2.2.3.
    /// `p1 = pres || preq || rat' || iat'`, `p2 = padding || ia || ra`,
    /// `c1 = e(k, e(k, r XOR p1) XOR p2)`.
    /// - Parameters: `k` (TK) and `r` 16 octets; `preq`/`pres` the 7 octets of the Pairing
    ///   Request/Response command (code first on the wire, so *reversed* here: MSB first);
    ///   `iat`/`rat` the address types (0 public, 1 random; only bit 0 is used); `ia`/`ra` the
    ///   6-octet addresses MSB first. Result 16 octets MSB first.
    public static func c1(k: [UInt8], r: [UInt8], preq: [UInt8], pres: [UInt8],
                          iat: UInt8, ia: [UInt8], rat: UInt8, ra: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(k, 16, "k")
        try check(r, 16, "r")
        try check(preq, 7, "preq")
        try check(pres, 7, "pres")
        try check(ia, 6, "ia")
        try check(ra, 6, "ra")
        let p1 = pres + preq + [rat & 1, iat & 1]
        let p2 = [0, 0, 0, 0] + ia + ra
        let inner = try e(key: k, plaintext: xor(r, p1))
        return try e(key: k, plaintext: xor(inner, p2))
    }

    /// Legacy key generation `s1(k, r1, r2) = e(k, r1' || r2')` where r1', r2' are the least
    /// significant 64 bits of r1, r2 (Vol 3 Part H 2.2.4). All 16 octets, MSB first.
    public static func s1(k: [UInt8], r1: [UInt8], r2: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(k, 16, "k")
        try check(r1, 16, "r1")
        try check(r2, 16, "r2")
        return try e(key: k, plaintext: Array(r1[8..<16]) + Array(r2[8..<16]))
    }

    /// LE Secure Connections confirm value `f4(U, V, X, Z) = AES-CMAC_X(U || V || Z)`,
    /// Vol 3 Part H 2.2.6. `u`, `v` 32 octets (public key X coordinates), `x` 16 octets, `z` 1 octet;
    /// result 16 octets; all MSB first.
    public static func f4(u: [UInt8], v: [UInt8], x: [UInt8], z: UInt8) throws(SMPToolboxError) -> [UInt8] {
        try check(u, 32, "u")
        try check(v, 32, "v")
        try check(x, 16, "x")
        return try aesCMAC(key: x, message: u + v + [z])
    }

    /// SALT of f5, Vol 3 Part H 2.2.7.
    static let f5Salt: [UInt8] = [0x6C, 0x88, 0x83, 0x91, 0xAA, 0xF5, 0xA5, 0x38,
                                  0x60, 0x37, 0x0B, 0xDB, 0x5A, 0x60, 0x83, 0xBE]

    /// LE Secure Connections key generation `f5`, Vol 3 Part H 2.2.7.
    /// `w` (DHKey) 32 octets, `n1`/`n2` 16 octets, `a1`/`a2` 7 octets (address type octet, 0 public or
    /// 1 random, followed by the 6-octet address: MSB first, so the type is the first element).
    /// Returns MacKey and LTK, 16 octets each, MSB first.
    public static func f5(w: [UInt8], n1: [UInt8], n2: [UInt8], a1: [UInt8], a2: [UInt8])
        throws(SMPToolboxError) -> (macKey: [UInt8], ltk: [UInt8]) {
        try check(w, 32, "w")
        try check(n1, 16, "n1")
        try check(n2, 16, "n2")
        try check(a1, 7, "a1")
        try check(a2, 7, "a2")
        let t = try aesCMAC(key: f5Salt, message: w)
        let keyID: [UInt8] = [0x62, 0x74, 0x6C, 0x65]  // "btle"
        let tail = keyID + n1 + n2 + a1 + a2 + [0x01, 0x00]  // Length = 256
        let macKey = try aesCMAC(key: t, message: [0x00] + tail)
        let ltk = try aesCMAC(key: t, message: [0x01] + tail)
        return (macKey, ltk)
    }

    /// LE Secure Connections check value `f6 = AES-CMAC_W(N1 || N2 || R || IOcap || A1 || A2)`,
    /// Vol 3 Part H 2.2.8. `w` (MacKey), `n1`, `n2`, `r` 16 octets; `ioCap` 3 octets
    /// (AuthReq, OOB data flag, IO capability: MSB first); `a1`/`a2` 7 octets as in `f5`.
    public static func f6(w: [UInt8], n1: [UInt8], n2: [UInt8], r: [UInt8], ioCap: [UInt8],
                          a1: [UInt8], a2: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(w, 16, "w")
        try check(n1, 16, "n1")
        try check(n2, 16, "n2")
        try check(r, 16, "r")
        try check(ioCap, 3, "ioCap")
        try check(a1, 7, "a1")
        try check(a2, 7, "a2")
        return try aesCMAC(key: w, message: n1 + n2 + r + ioCap + a1 + a2)
    }

    /// Numeric comparison value `g2 = AES-CMAC_X(U || V || Y) mod 2^32`, Vol 3 Part H 2.2.9.
    /// `u`, `v` 32 octets; `x`, `y` 16 octets; MSB first. The 6-digit value shown to the user is
    /// `g2 % 1_000_000`.
    public static func g2(u: [UInt8], v: [UInt8], x: [UInt8], y: [UInt8]) throws(SMPToolboxError) -> UInt32 {
        try check(u, 32, "u")
        try check(v, 32, "v")
        try check(x, 16, "x")
        try check(y, 16, "y")
        let mac = try aesCMAC(key: x, message: u + v + y)
        return mac[12..<16].reduce(0) { ($0 << 8) | UInt32($1) }
    }

    /// Link key conversion `h6(W, keyID) = AES-CMAC_W(keyID)`, Vol 3 Part H 2.2.10.
    /// `w` 16 octets, `keyID` 4 octets; MSB first.
    public static func h6(w: [UInt8], keyID: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(w, 16, "w")
        try check(keyID, 4, "keyID")
        return try aesCMAC(key: w, message: keyID)
    }

    /// Link key conversion `h7(SALT, W) = AES-CMAC_SALT(W)`, Vol 3 Part H 2.2.11.
    /// `salt`, `w` 16 octets; MSB first.
    public static func h7(salt: [UInt8], w: [UInt8]) throws(SMPToolboxError) -> [UInt8] {
        try check(salt, 16, "salt")
        try check(w, 16, "w")
        return try aesCMAC(key: salt, message: w)
    }

    // MARK: P-256 (LE Secure Connections public keys), Vol 3 Part H 2.3.5.6.1

    /// A public key as the 32-octet X and Y coordinates, MSB first.
    public static func publicKeyCoordinates(_ key: P256.KeyAgreement.PrivateKey) -> (x: [UInt8], y: [UInt8]) {
        let raw = Array(key.publicKey.rawRepresentation)  // X || Y, big-endian
        return (Array(raw[0..<32]), Array(raw[32..<64]))
    }

    /// A private key from its 32-octet scalar, MSB first (e.g. the Appendix D debug keys).
    public static func privateKey(scalar: [UInt8]) -> P256.KeyAgreement.PrivateKey? {
        try? P256.KeyAgreement.PrivateKey(rawRepresentation: scalar)
    }

    /// The Diffie-Hellman key (DHKey, the X coordinate of the shared point; 32 octets MSB first)
    /// with a peer public key given as X and Y MSB first. Returns nil when the point is not on
    /// P-256 (an invalid key must fail pairing, Vol 3 Part H 2.3.5.6.1).
    public static func dhKey(privateKey: P256.KeyAgreement.PrivateKey, peerX: [UInt8], peerY: [UInt8]) -> [UInt8]? {
        guard peerX.count == 32, peerY.count == 32,
              let peer = try? P256.KeyAgreement.PublicKey(rawRepresentation: peerX + peerY),
              let shared = try? privateKey.sharedSecretFromKeyAgreement(with: peer)
        else { return nil }
        return shared.withUnsafeBytes { Array($0) }
    }
}
