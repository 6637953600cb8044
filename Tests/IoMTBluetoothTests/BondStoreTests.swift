#if canImport(Glibc)
import Glibc
#endif
import Crypto
@testable import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTTestSupport
import Testing

/// Issue 8: the bond store sealed with the at-rest key; loose permissions refused.
@Suite struct BondStoreTests {
    static let identity = LEAddress(BDAddress("F0:F1:F2:F3:F4:02")!, type: .randomDevice)
    static let ltk: [UInt8] = (0..<16).map { UInt8(0xA0 + $0) }
    static let irk: [UInt8] = (0..<16).map { UInt8(0x30 + $0) }
    static func bond() -> Bond {
        Bond(identity: identity, ltk: ltk, ediv: 0, rand: 0, keySize: 16, secureConnections: true, authenticated: false,
             irk: irk, createdAt: Timestamp(millisecondsSinceEpoch: 1_764_000_000_000))
    }

    func fileBytes(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    @Test func aSealedBondReadsBackOnlyWithItsKeyAndHidesTheKeys() throws {
        let dir = try TempDir()
        let key = SymmetricKey(size: .bits256)
        let store = BondStore(stateDirectory: dir.path, key: key)
        try store.save(Self.bond())
        let path = store.directory + "/F0F1F2F3F402.bond"
        let bytes = try fileBytes(path)
        #expect(bytes.starts(with: BondStore.sealedMagic))
        let text = String(decoding: bytes, as: UTF8.self)
        for secret in [Self.ltk, Self.irk] {
            #expect(!bytes.contains(subsequence: secret) && !bytes.contains(subsequence: Array(secret.reversed())))
            #expect(!text.uppercased().contains(secret.map { b in
                let h = String(b, radix: 16, uppercase: true)
                return h.count == 1 ? "0" + h : h
            }.joined()))
        }
        #expect(!text.contains("F0:F1:F2:F3:F4:02"))
        #expect(try store.bond(for: Self.identity.address) == Self.bond())
        // Another key, or none: a clear error, the file left alone.
        #expect(throws: BondStoreError.self) { try BondStore(stateDirectory: dir.path, key: SymmetricKey(size: .bits256)).bond(for: Self.identity.address) }
        do {
            _ = try BondStore(stateDirectory: dir.path).bond(for: Self.identity.address)
            Issue.record("a sealed bond opened without a key")
        } catch {
            #expect(error.description.contains("no key is configured") && error.description.contains("nothing was deleted"))
        }
        #expect(access(path, F_OK) == 0)
        // A sealed file renamed into another device's name does not open (the name is authenticated).
        let other = store.directory + "/F0F1F2F3F403.bond"
        #expect(rename(path, other) == 0)
        #expect(throws: BondStoreError.self) { try store.bond(for: BDAddress("F0:F1:F2:F3:F4:03")!) }
    }

    @Test func aPlainBondFromBeforeTheKeyStillLoadsAndIsSealedWhenSavedAgain() throws {
        let dir = try TempDir()
        try BondStore(stateDirectory: dir.path).save(Self.bond())
        let key = SymmetricKey(size: .bits256)
        let sealed = BondStore(stateDirectory: dir.path, key: key)
        let loaded = try #require(try sealed.bond(for: Self.identity.address))
        try sealed.save(loaded)
        #expect(try fileBytes(sealed.directory + "/F0F1F2F3F402.bond").starts(with: BondStore.sealedMagic))
    }

    @Test func aBondFileOthersCanReadIsRefused() throws {
        let dir = try TempDir()
        let store = BondStore(stateDirectory: dir.path)
        try store.save(Self.bond())
        chmod(store.directory + "/F0F1F2F3F402.bond", 0o644)
        do {
            _ = try store.bond(for: Self.identity.address)
            Issue.record("a world-readable bond was used")
        } catch {
            #expect(error.description.contains("chmod 600"))
        }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence s: [UInt8]) -> Bool {
        guard !s.isEmpty, s.count <= count else { return false }
        for i in 0...(count - s.count) where Array(self[i..<(i + s.count)]) == s { return true }
        return false
    }
}
