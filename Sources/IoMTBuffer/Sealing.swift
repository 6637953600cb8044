import Crypto
// `Data` and `DataProtocol` are the currency of swift-crypto's AES-GCM API.
import FoundationEssentials

/// AES-256-GCM sealing of stored message payloads (issue 8, encryption at rest; NIST SP 800-38D).
///
/// A sealed payload is stored as `nonce (12) || ciphertext || tag (16)` (swift-crypto's
/// "combined" form) with a fresh random nonce per record. The associated data is the reading id
/// (`id_high || id_low`, 16 bytes big-endian) followed by the row's topic (UTF-8), so a sealed
/// payload moved to another row (another id or another topic) no longer opens.
///
/// What is NOT sealed (no patient data, but visible to whoever copies the file): the row's id,
/// kind, priority, device id, sequence number, creation time, size and topic; the gap rows
/// (device id, sequence range, loss reason, times) and `device_state` (device id, sequence
/// high-water mark, loss total, source cursor). A copy still allows traffic analysis.
struct PayloadSealer: Sendable {
    let key: SymmetricKey

    /// Bytes a sealed payload adds: 12-byte nonce and 16-byte tag.
    static let overhead = 28

    /// The name of the key-check record in the `meta` table.
    static let keyCheckName = "key-check"
    /// The known constant sealed as the key check, and the associated data it is sealed with.
    static let keyCheckPlaintext = Array("iomt-agent buffer key check v1".utf8)
    static let keyCheckAssociatedData = Array("iomt-agent buffer meta key-check".utf8)

    init(key: SymmetricKey) {
        self.key = key
    }

    /// `id_high || id_low` (big-endian) `|| topic`.
    static func associatedData(idHigh: Int64, idLow: Int64, topic: String) -> [UInt8] {
        var ad: [UInt8] = []
        ad.reserveCapacity(16 + topic.utf8.count)
        withUnsafeBytes(of: idHigh.bigEndian) { ad.append(contentsOf: $0) }
        withUnsafeBytes(of: idLow.bigEndian) { ad.append(contentsOf: $0) }
        ad.append(contentsOf: topic.utf8)
        return ad
    }

    /// Seals one payload; returns `nonce || ciphertext || tag`.
    func seal(_ payload: [UInt8], idHigh: Int64, idLow: Int64, topic: String, path: String) throws(BufferError) -> Data {
        do {
            let box = try AES.GCM.seal(payload, using: key,
                                       authenticating: Self.associatedData(idHigh: idHigh, idLow: idLow, topic: topic))
            guard let combined = box.combined else {
                throw BufferError.invalidConfiguration(path: path, detail: "AES-GCM gave no combined form (nonce is not 12 bytes)")
            }
            return combined
        } catch let error as BufferError {
            throw error
        } catch {
            throw BufferError.invalidConfiguration(path: path, detail: "cannot seal a payload with the at-rest key: \(error)")
        }
    }

    /// Opens a stored `nonce || ciphertext || tag`; nil when it does not authenticate (tampered,
    /// moved to another row, damaged, or sealed under another key).
    func open(_ stored: UnsafeRawBufferPointer, idHigh: Int64, idLow: Int64, topic: String) -> [UInt8]? {
        guard stored.count >= Self.overhead,
              let box = try? AES.GCM.SealedBox(combined: stored),
              let plain = try? AES.GCM.open(box, using: key,
                                            authenticating: Self.associatedData(idHigh: idHigh, idLow: idLow, topic: topic))
        else { return nil }
        return [UInt8](plain)
    }

    /// A fresh key-check record: the known constant sealed under this key.
    func makeKeyCheck(path: String) throws(BufferError) -> [UInt8] {
        do {
            let box = try AES.GCM.seal(Self.keyCheckPlaintext, using: key, authenticating: Self.keyCheckAssociatedData)
            guard let combined = box.combined else {
                throw BufferError.invalidConfiguration(path: path, detail: "AES-GCM gave no combined form")
            }
            return [UInt8](combined)
        } catch let error as BufferError {
            throw error
        } catch {
            throw BufferError.invalidConfiguration(path: path, detail: "cannot seal the key check: \(error)")
        }
    }

    /// True when `record` is the key check sealed under this key.
    func opensKeyCheck(_ record: [UInt8]) -> Bool {
        guard let box = try? AES.GCM.SealedBox(combined: record),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Self.keyCheckAssociatedData)
        else { return false }
        return [UInt8](plain) == Self.keyCheckPlaintext
    }
}

extension Statement {
    /// Binds the bytes of a sealed payload (copied by SQLite, no intermediate array).
    func bind(_ index: Int32, _ value: Data) throws(BufferError) {
        try bind(index, bytes: value)
    }
}
