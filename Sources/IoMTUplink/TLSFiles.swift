#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The few OpenSSL functions the uplink needs for a credential reload, looked up at run time in
/// the libssl that libmosquitto already loaded (IoMTUplink does not link OpenSSL itself; see
/// `sslVerifyResult`). Addresses are stored as `Int` (Sendable); 0 means "not found", and
/// then ``OpenSSL/available`` is false: the reload still checks files and permissions but
/// cannot load them, and the CA store of the running instance is not replaced.
enum OpenSSL {
    private static func symbol(_ name: String) -> Int {
        guard let h = dlopen(nil, RTLD_LAZY), let sym = dlsym(h, name) else { return 0 }
        return Int(bitPattern: sym)
    }

    private static let tlsClientMethod = symbol("TLS_client_method")
    private static let ctxNew = symbol("SSL_CTX_new")
    private static let ctxFree = symbol("SSL_CTX_free")
    private static let loadVerifyLocations = symbol("SSL_CTX_load_verify_locations")
    private static let useCertificateChainFile = symbol("SSL_CTX_use_certificate_chain_file")
    private static let usePrivateKeyFile = symbol("SSL_CTX_use_PrivateKey_file")
    private static let checkPrivateKey = symbol("SSL_CTX_check_private_key")
    private static let errGetError = symbol("ERR_get_error")
    private static let errClearError = symbol("ERR_clear_error")
    private static let errErrorStringN = symbol("ERR_error_string_n")

    static var available: Bool {
        [tlsClientMethod, ctxNew, ctxFree, loadVerifyLocations, useCertificateChainFile, usePrivateKeyFile,
         checkPrivateKey, errGetError, errClearError, errErrorStringN].allSatisfy { $0 != 0 }
    }

    private static func fn<F>(_ address: Int, _: F.Type) -> F {
        unsafeBitCast(UnsafeRawPointer(bitPattern: address)!, to: F.self)
    }

    /// A new client `SSL_CTX` (as libmosquitto makes one: `SSL_CTX_new(TLS_client_method())`),
    /// or nil. The caller owns one reference.
    static func newClientContext() -> UnsafeMutableRawPointer? {
        guard available else { return nil }
        let method = fn(tlsClientMethod, (@convention(c) () -> UnsafeRawPointer?).self)()
        return fn(ctxNew, (@convention(c) (UnsafeRawPointer?) -> UnsafeMutableRawPointer?).self)(method)
    }

    static func free(_ ctx: UnsafeMutableRawPointer) {
        guard ctxFree != 0 else { return }
        fn(ctxFree, (@convention(c) (UnsafeMutableRawPointer?) -> Void).self)(ctx)
    }

    /// OpenSSL's queued errors as text (and clears the queue; it is per thread).
    static func drainErrors() -> String {
        guard available else { return "" }
        var texts: [String] = []
        let get = fn(errGetError, (@convention(c) () -> UInt).self)
        let string = fn(errErrorStringN, (@convention(c) (UInt, UnsafeMutablePointer<CChar>?, Int) -> Void).self)
        while true {
            let e = get()
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            string(e, &buf, buf.count)
            texts.append(String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return texts.joined(separator: "; ")
    }

    /// Loads the files into a scratch `SSL_CTX` exactly as libmosquitto does at connect
    /// (lib/net_mosq.c `net__init_ssl_ctx` / `net__tls_load_ca`: verify locations, certificate
    /// chain, PEM private key, `SSL_CTX_check_private_key`). Returns what failed, or nil.
    static func loadProblem(caFile: String?, caPath: String?, certFile: String?, keyFile: String?) -> String? {
        guard available, let ctx = newClientContext() else { return nil }
        defer { free(ctx) }
        fn(errClearError, (@convention(c) () -> Void).self)()
        let loadCA = fn(loadVerifyLocations,
                        (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32).self)
        if caFile != nil || caPath != nil, loadCA(ctx, caFile, caPath) != 1 {
            return "CA file \(caFile ?? caPath ?? "-") does not load: \(drainErrors())"
        }
        if let certFile {
            let use = fn(useCertificateChainFile, (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Int32).self)
            if use(ctx, certFile) != 1 { return "certificate file \(certFile) does not load: \(drainErrors())" }
        }
        if let keyFile {
            let use = fn(usePrivateKeyFile, (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int32) -> Int32).self)
            // SSL_FILETYPE_PEM = 1
            if use(ctx, keyFile, 1) != 1 {
                // OpenSSL 3 compares the key with the certificate already here ("key values mismatch").
                let errors = drainErrors()
                if errors.contains("mismatch") {
                    return "key file \(keyFile) does not match the certificate \(certFile ?? "-"): \(errors)"
                }
                return "key file \(keyFile) does not load as a PEM private key: \(errors)"
            }
            let check = fn(checkPrivateKey, (@convention(c) (UnsafeMutableRawPointer?) -> Int32).self)
            if certFile != nil, check(ctx) != 1 {
                return "key file \(keyFile) does not match the certificate \(certFile ?? "-"): \(drainErrors())"
            }
        }
        return nil
    }
}

/// The CA, certificate and key files of a TLS configuration, checked before they are used.
struct TLSFiles: Sendable, Equatable {
    var caFile: String?
    var certFile: String?
    var keyFile: String?

    /// `caFile` nil means the system store (as in `Engine.configure`).
    var caPath: String? { caFile == nil ? "/etc/ssl/certs" : nil }

    /// Every file is a readable regular file, the key is readable by its owner only (as the
    /// agent's `SecretFile` demands at start), and OpenSSL loads them: the CA, the certificate
    /// chain and a private key that matches the certificate. Throws
    /// ``UplinkError/tlsFilesRefused(detail:)`` naming the file and the fix.
    func validate() throws(UplinkError) {
        for (role, path) in [("CA file", caFile), ("certificate file", certFile), ("key file", keyFile)] {
            guard let path else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw .tlsFilesRefused(detail: "cannot read the \(role) \(path): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw .tlsFilesRefused(detail: "the \(role) \(path) is not a regular file")
            }
            if role == "key file", st.st_mode & 0o077 != 0 {
                throw .tlsFilesRefused(detail: "the key file \(path) has loose permissions (\(String(st.st_mode & 0o777, radix: 8))); it must be readable by the agent only: chmod 600 \(path)")
            }
        }
        if let problem = OpenSSL.loadProblem(caFile: caFile, caPath: caPath, certFile: certFile, keyFile: keyFile) {
            throw .tlsFilesRefused(detail: problem)
        }
    }
}
