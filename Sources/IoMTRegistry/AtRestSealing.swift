import Crypto

/// AES-256-GCM sealing of the registry file and of audit log lines (issue 8), under a key the
/// agent derives from its at-rest key (`AtRestKey.subkey("registry")` / `subkey("audit")`,
/// never stored in the state directory). A sealed box is `nonce (12) || ciphertext || tag (16)`
/// (swift-crypto's `combined` form, a random 96-bit nonce per seal, NIST SP 800-38D 8.2.2);
/// the associated data binds it to its place, so a box moved elsewhere does not open:
/// the file name for the registry, the file name and line number for an audit line.
enum AtRestSealing {
    /// First bytes of a sealed registry file; a plaintext one starts with `{`.
    static let registryMagic: [UInt8] = Array("IOMTREG1".utf8)
    /// Prefix of a sealed audit line; a plaintext one starts with `{`.
    static let auditLinePrefix: [UInt8] = Array("sealed1:".utf8)

    static func seal(_ plaintext: [UInt8], key: SymmetricKey, associatedData: [UInt8]) -> [UInt8]? {
        guard let box = try? AES.GCM.seal(plaintext, using: key, authenticating: associatedData),
              let combined = box.combined else { return nil }
        return Array(combined)
    }

    /// nil when the box does not authenticate (wrong key, damaged, or moved).
    static func open<C: Collection>(_ combined: C, key: SymmetricKey, associatedData: [UInt8]) -> [UInt8]?
    where C.Element == UInt8 {
        guard let box = try? AES.GCM.SealedBox(combined: Array(combined)),
              let plain = try? AES.GCM.open(box, using: key, authenticating: associatedData) else { return nil }
        return Array(plain)
    }

    static func registryAssociatedData(path: String) -> [UInt8] {
        Array("iomt-registry/1 \(baseName(path))".utf8)
    }

    /// `lineNumber` is 1-based, as in the file.
    static func auditAssociatedData(path: String, lineNumber: Int) -> [UInt8] {
        Array("iomt-audit/1 \(baseName(path)) line \(lineNumber)".utf8)
    }

    static func baseName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

/// Standard base64 (RFC 4648 section 4, with padding), for sealed audit lines.
enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return out
    }

    /// nil for anything that is not canonical padded base64.
    static func decode<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8 {
        let chars = Array(text)
        guard chars.count % 4 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt32? {
            switch c {
            case 65...90: UInt32(c - 65)
            case 97...122: UInt32(c - 71)
            case 48...57: UInt32(c + 4)
            case 43: 62
            case 47: 63
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 4 * 3)
        var i = 0
        while i < chars.count {
            let last = i + 4 == chars.count
            let pad = last ? (chars[i + 3] == 61 ? (chars[i + 2] == 61 ? 2 : 1) : 0) : 0
            var n: UInt32 = 0
            for j in 0..<4 {
                if j >= 4 - pad { n <<= 6; continue }
                guard let v = value(chars[i + j]) else { return nil }
                n = n << 6 | v
            }
            out.append(UInt8(n >> 16 & 0xFF))
            if pad < 2 { out.append(UInt8(n >> 8 & 0xFF)) }
            if pad < 1 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        return out
    }
}
