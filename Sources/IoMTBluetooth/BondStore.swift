#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Crypto
import IoMTCore
import IoMTHCI
import IoMTSMP

/// What pairing left us with for one peer (Core v5.4 Vol 3 Part H 2.4): the key to re-encrypt
/// the link, and the peer's identity (address + IRK) to recognise it behind a resolvable
/// private address.
public struct Bond: Sendable, Hashable {
    /// The peer's identity address (its public or static address, or the address it connected
    /// with when it distributed no identity).
    public var identity: LEAddress
    /// Long Term Key, 16 octets in HCI order (least significant first).
    public var ltk: [UInt8]
    public var ediv: UInt16
    public var rand: UInt64
    public var keySize: UInt8
    public var secureConnections: Bool
    public var authenticated: Bool
    /// The peer's Identity Resolving Key, most significant octet first (as the toolbox takes it).
    public var irk: [UInt8]?
    public var createdAt: Timestamp

    public init(identity: LEAddress, ltk: [UInt8], ediv: UInt16, rand: UInt64, keySize: UInt8,
                secureConnections: Bool, authenticated: Bool, irk: [UInt8]?, createdAt: Timestamp) {
        self.identity = identity
        self.ltk = ltk
        self.ediv = ediv
        self.rand = rand
        self.keySize = keySize
        self.secureConnections = secureConnections
        self.authenticated = authenticated
        self.irk = irk
        self.createdAt = createdAt
    }

    /// True when `address` is this peer: its identity, or a resolvable private address its IRK
    /// resolves (Core v5.4 Vol 6 Part B 1.3.2.3).
    public func matches(_ address: LEAddress) -> Bool {
        if address.address == identity.address { return true }
        guard address.type.isRandom, address.address.randomSubtype == .resolvablePrivate, let irk else { return false }
        return resolvePrivateAddress(address.address, irk: irk)
    }
}

/// A problem with the bond store, naming the file and the fix.
public struct BondStoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    init(_ d: String) { description = d }
}

/// Bonds on disk: one small text file per peer under `<state_dir>/bluetooth/bonds/`, mode 0600
/// in a 0700 directory, written atomically (temp file, fsync, rename, directory fsync). The
/// keys are secrets: a bond file with loose permissions is refused, with the fix.
///
/// Format (`iomt-bond/1`): `key=value` lines; byte strings in hex. Unknown keys are errors:
/// a file we cannot fully understand is not silently half-used.
public struct BondStore: Sendable {
    public let directory: String
    /// With a key, bond files are sealed with AES-256-GCM (issue 8): a copied SD card yields no
    /// pairing key. Without one they are plain text, 0600.
    let key: SymmetricKey?

    /// Magic of a sealed bond file: `IOMTBOND1`, then the AES-GCM combined box (nonce, ciphertext, tag).
    static let sealedMagic: [UInt8] = Array("IOMTBOND1".utf8)

    public init(stateDirectory: String, key: SymmetricKey? = nil) {
        directory = stateDirectory + "/bluetooth/bonds"
        self.key = key
    }

    private func path(_ identity: BDAddress) -> String {
        directory + "/" + identity.bytes.reversed().map { hex2($0) }.joined() + ".bond"
    }

    /// Every bond; a file that cannot be read is reported, not skipped silently.
    public func loadAll() throws(BondStoreError) -> [Bond] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw BondStoreError("cannot open \(directory): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { ptr in
                ptr.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasSuffix(".bond") { names.append(name) }
        }
        return try names.sorted().map { (n: String) throws(BondStoreError) -> Bond in try load(directory + "/" + n) }
    }

    public func bond(for identity: BDAddress) throws(BondStoreError) -> Bond? {
        let p = path(identity)
        if access(p, F_OK) != 0 { return nil }
        return try load(p)
    }

    public func save(_ bond: Bond) throws(BondStoreError) {
        try makeDirectories()
        var text = "format=iomt-bond/1\n"
        text += "identity=\(bond.identity.address)\n"
        text += "identity_type=\(bond.identity.type.rawValue)\n"
        text += "ltk=\(hex(bond.ltk))\n"
        text += "ediv=\(bond.ediv)\n"
        text += "rand=\(bond.rand)\n"
        text += "key_size=\(bond.keySize)\n"
        text += "secure_connections=\(bond.secureConnections)\n"
        text += "authenticated=\(bond.authenticated)\n"
        if let irk = bond.irk { text += "irk=\(hex(irk))\n" }
        text += "created=\(bond.createdAt)\n"
        let final = path(bond.identity.address)
        let tmp = final + ".tmp"
        var bytes = Array(text.utf8)
        if let key {
            // The file name (the identity) is the associated data: a sealed bond cannot be
            // renamed into another device's bond.
            do {
                let box = try AES.GCM.seal(bytes, using: key, authenticating: Array(final.split(separator: "/").last ?? "").map { UInt8($0.asciiValue ?? 0) })
                guard let combined = box.combined else { throw BondStoreError("cannot seal \(final)") }
                bytes = Self.sealedMagic + Array(combined)
            } catch let e as BondStoreError {
                throw e
            } catch {
                throw BondStoreError("cannot seal \(final): \(error)")
            }
        }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BondStoreError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            unlink(tmp)
            throw BondStoreError("cannot write \(tmp): \(String(cString: strerror(errno))) (disk full?)")
        }
        guard rename(tmp, final) == 0 else {
            unlink(tmp)
            throw BondStoreError("cannot rename \(tmp): \(String(cString: strerror(errno)))")
        }
        syncDirectory()
    }

    /// Deletes a bond (discharge): the keys are gone from disk afterwards.
    public func remove(_ identity: BDAddress) throws(BondStoreError) {
        let p = path(identity)
        if unlink(p) != 0 && errno != ENOENT {
            throw BondStoreError("cannot delete \(p): \(String(cString: strerror(errno)))")
        }
        syncDirectory()
    }

    private func makeDirectories() throws(BondStoreError) {
        var prefix = ""
        for part in directory.split(separator: "/", omittingEmptySubsequences: false) {
            prefix += (prefix.isEmpty && part.isEmpty) ? "/" : (prefix.hasSuffix("/") || prefix.isEmpty ? "" : "/") + part
            if prefix.isEmpty || prefix == "/" { continue }
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw BondStoreError("cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func syncDirectory() {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    private func load(_ p: String) throws(BondStoreError) -> Bond {
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BondStoreError("cannot read bond file \(p): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BondStoreError("cannot stat bond file \(p)") }
        if st.st_mode & 0o077 != 0 {
            throw BondStoreError("bond file \(p) has loose permissions (\(String(st.st_mode & 0o777, radix: 8))); it holds pairing keys: chmod 600 \(p)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw BondStoreError("cannot read bond file \(p)") }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > 8192 { throw BondStoreError("bond file \(p) is too large to be a bond") }
        }
        if bytes.starts(with: Self.sealedMagic) {
            guard let key else {
                throw BondStoreError("bond file \(p) is sealed and no key is configured (security.key_file); nothing was deleted")
            }
            let name = Array(p.split(separator: "/").last ?? "").map { UInt8($0.asciiValue ?? 0) }
            do {
                let box = try AES.GCM.SealedBox(combined: bytes.dropFirst(Self.sealedMagic.count))
                bytes = Array(try AES.GCM.open(box, using: key, authenticating: name))
            } catch {
                throw BondStoreError("cannot open sealed bond file \(p): wrong key (security.key_file) or a damaged file; nothing was deleted")
            }
        }
        return try Self.parse(String(decoding: bytes, as: UTF8.self), path: p)
    }

    static func parse(_ text: String, path p: String) throws(BondStoreError) -> Bond {
        var fields: [String: String] = [:]
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let eq = line.firstIndex(of: "=") else { throw BondStoreError("\(p) line \(n + 1): expected key=value") }
            let key = String(line[..<eq])
            guard ["format", "identity", "identity_type", "ltk", "ediv", "rand", "key_size", "secure_connections",
                   "authenticated", "irk", "created"].contains(key) else {
                throw BondStoreError("\(p) line \(n + 1): unknown key '\(key)'")
            }
            fields[key] = String(line[line.index(after: eq)...])
        }
        func need(_ k: String) throws(BondStoreError) -> String {
            guard let v = fields[k] else { throw BondStoreError("\(p): missing '\(k)'") }
            return v
        }
        guard try need("format") == "iomt-bond/1" else { throw BondStoreError("\(p): unsupported format '\(fields["format"] ?? "")'") }
        guard let address = BDAddress(try need("identity")) else { throw BondStoreError("\(p): 'identity' is not an address") }
        guard let type = UInt8(try need("identity_type")) else { throw BondStoreError("\(p): bad 'identity_type'") }
        guard let ltk = unhex(try need("ltk")), ltk.count == 16 else { throw BondStoreError("\(p): 'ltk' must be 32 hex digits") }
        guard let ediv = UInt16(try need("ediv")), let rand = UInt64(try need("rand")),
              let keySize = UInt8(try need("key_size")), (7...16).contains(keySize) else {
            throw BondStoreError("\(p): bad 'ediv', 'rand' or 'key_size'")
        }
        var irk: [UInt8]?
        if let s = fields["irk"] {
            guard let k = unhex(s), k.count == 16 else { throw BondStoreError("\(p): 'irk' must be 32 hex digits") }
            irk = k
        }
        guard let created = Timestamp(rfc3339: try need("created")) else { throw BondStoreError("\(p): bad 'created' time") }
        return Bond(identity: LEAddress(address, type: AddressType(rawValue: type)), ltk: ltk, ediv: ediv, rand: rand,
                    keySize: keySize, secureConnections: fields["secure_connections"] == "true",
                    authenticated: fields["authenticated"] == "true", irk: irk, createdAt: created)
    }
}

func hex2(_ b: UInt8) -> String {
    let s = String(b, radix: 16, uppercase: true)
    return s.count == 1 ? "0" + s : s
}

func hex(_ bytes: [UInt8]) -> String { bytes.map(hex2).joined() }

func unhex(_ s: String) -> [UInt8]? {
    let c = Array(s.utf8)
    guard c.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < c.count {
        guard let v = UInt8(String(decoding: c[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
        out.append(v)
        i += 2
    }
    return out
}

/// Our random static address, kept under the state directory so bonded peripherals see the
/// same central after a restart (Core v5.4 Vol 6 Part B 1.3.2.1: the two top bits are 0b11,
/// and the rest is neither all zeros nor all ones).
public func loadOrCreateOwnAddress(stateDirectory: String) throws(BondStoreError) -> BDAddress {
    let dir = stateDirectory + "/bluetooth"
    if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw BondStoreError("cannot create \(dir): \(String(cString: strerror(errno)))") }
    let p = dir + "/own-address"
    let fd = open(p, O_RDONLY | O_CLOEXEC)
    if fd >= 0 {
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        close(fd)
        let text = String(decoding: buf[0..<max(0, n)], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard let a = BDAddress(text), a.randomSubtype == .staticAddress else {
            throw BondStoreError("\(p) does not hold a random static address; delete it to make a new one")
        }
        return a
    }
    var bytes = secureRandomBytes(6)
    bytes[5] |= 0xC0
    if bytes[0..<5].allSatisfy({ $0 == 0 }) { bytes[0] = 1 }
    if bytes[0..<5].allSatisfy({ $0 == 0xFF }) { bytes[0] = 0xFE }
    guard let a = BDAddress(wireBytes: bytes) else { throw BondStoreError("internal: address length") }
    let tmp = p + ".tmp"
    let wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard wfd >= 0 else { throw BondStoreError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
    let text = Array("\(a)\n".utf8)
    _ = text.withUnsafeBytes { write(wfd, $0.baseAddress, $0.count) }
    fsync(wfd)
    close(wfd)
    guard rename(tmp, p) == 0 else { throw BondStoreError("cannot rename \(tmp): \(String(cString: strerror(errno)))") }
    return a
}
