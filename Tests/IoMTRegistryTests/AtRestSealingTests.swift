@testable import IoMTRegistry
import Testing

/// The base64 codec of sealed audit lines (RFC 4648 section 4): round trips at every length
/// modulo 3, the RFC's test vectors, and refusal of anything that is not canonical padded base64
/// (a damaged line must come back as unreadable, never as other bytes).
@Suite struct Base64Tests {
    @Test func rfc4648TestVectorsEncodeAndDecode() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(String(decoding: Base64.encode(Array(plain.utf8)), as: UTF8.self) == encoded)
            #expect(Base64.decode(Array(encoded.utf8)) == Array(plain.utf8))
        }
    }

    @Test func everyLengthAndByteValueRoundTrips() {
        for n in 0..<70 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ n) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes, "length \(n)")
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all)) == all)
    }

    @Test func truncatedOrForeignTextIsRefused() {
        let good = Array("Zm9vYmFy".utf8)
        for cut in 1..<good.count where cut % 4 != 0 {
            #expect(Base64.decode(good.prefix(cut)) == nil, "truncated to \(cut)")
        }
        for bad in ["Zm9v!mFy", "Zm9v YmFy", "Zm=vYmFy", "{\"a\":1}", "Zm9vYmFy\n"] {
            #expect(Base64.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
    }
}
