#if canImport(Glibc)
import Glibc
#endif
import Crypto
import IoMTConfig

/// The at-rest key (issue 8): 32 bytes as 64 hex digits, from `security.key_file` or, under
/// systemd, from the credential `state-key` (`LoadCredential=state-key:/etc/iomt-agent/state.key`,
/// or `LoadCredentialEncrypted=` to keep it TPM-sealed where the hub has a TPM). Never stored in
/// the state directory. Each use gets its own subkey (HKDF-SHA256), so keys never mix purposes.
public struct AtRestKey: Sendable {
    let master: SymmetricKey

    /// The configured key, the systemd credential, or nil (nothing is sealed then).
    public static func load(config: AgentConfig, environment: [String: String]) throws(AgentError) -> AtRestKey? {
        var path = config.securityKeyFile
        if path == nil, let dir = environment["CREDENTIALS_DIRECTORY"], access(dir + "/state-key", R_OK) == 0 {
            path = dir + "/state-key"
        }
        guard let path else { return nil }
        let text = try SecretFile.read(path).trimmedOf(" \t\r\n")
        guard text.utf8.count == 64, let bytes = Self.unhex(text) else {
            throw AgentError("the at-rest key in \(path) must be 64 hex digits (32 bytes): make one with `openssl rand -hex 32 > \(path)` and chmod 600")
        }
        return AtRestKey(master: SymmetricKey(data: bytes))
    }

    /// `CREDENTIALS_DIRECTORY` as systemd sets it for `LoadCredential=`.
    public static func credentialsEnvironment() -> [String: String] {
        guard let v = getenv("CREDENTIALS_DIRECTORY") else { return [:] }
        return ["CREDENTIALS_DIRECTORY": String(cString: v)]
    }

    /// The subkey for one purpose (`"bonds"`).
    public func subkey(_ purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: Array("iomt-agent at-rest \(purpose) v1".utf8), outputByteCount: 32)
    }

    static func unhex(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let a = it.next() {
            guard let b = it.next(), let hi = nibble(a), let lo = nibble(b) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}

extension String {
    func trimmedOf(_ set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
