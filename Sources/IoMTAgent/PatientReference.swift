import Crypto
import IoMTCore

/// How readings and audit messages name the patient on the wire (issue 8).
///
/// By default the patient id as configured. With `output.patient_pseudonym_key_file`, a keyed
/// pseudonym instead: `psn-` and the first 16 octets of HMAC-SHA256(key, patient id) in hex. The
/// same patient always maps to the same pseudonym, so a consumer holding the key (the hospital's
/// integration engine) can map it back by computing it for its own patient list, while a broker
/// operator or anyone reading the topics sees no identifier. The local registry and audit file
/// keep the real id (they stay on the hub, under the state directory).
public struct PatientReference: Sendable {
    private let key: SymmetricKey?

    /// The patient id itself.
    public static let identity = PatientReference(key: nil)

    private init(key: SymmetricKey?) { self.key = key }

    /// The key file's content (at least 32 bytes, e.g. `openssl rand -hex 32`); the file must be
    /// readable by the agent only, or the agent refuses to start.
    public init(keyFile path: String) throws(AgentError) {
        let text = try SecretFile.read(path)
        guard text.utf8.count >= 32 else {
            throw AgentError("pseudonym key file \(path) holds \(text.utf8.count) bytes; it needs at least 32 (e.g. `openssl rand -hex 32 > \(path)`)")
        }
        key = SymmetricKey(data: Array(text.utf8))
    }

    public var isPseudonymous: Bool { key != nil }

    public func callAsFunction(_ patientID: String) -> String {
        guard let key else { return patientID }
        let mac = HMAC<SHA256>.authenticationCode(for: Array(patientID.utf8), using: key)
        return "psn-" + mac.prefix(16).map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }
}
