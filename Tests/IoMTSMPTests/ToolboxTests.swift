import IoMTHCI
import IoMTSMP
import Testing

/// Hex (MSB first, spaces ignored) to octets, as the spec prints sample data.
func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.filter { !$0.isWhitespace })
    var out: [UInt8] = []
    var i = 0
    while i + 1 < digits.count {
        out.append(UInt8(String(digits[i...i + 1]), radix: 16) ?? 0)
        i += 2
    }
    return out
}

// Sample data of Core v5.4 Vol 3 Part H Appendix D (D.1 P-256, D.2 f4, D.3 f5, D.4 f6, D.5 g2, D.6 h6, h7,
// D.7 ah) and of the c1 / s1 examples in 2.2.3 / 2.2.4, as transcribed MSB first in
// google/bumble tests/smp_test.py and tests/crypto/crypto_test.py (their reversed_hex() undoes
// Bumble's LSB-first storage, so the hex strings there are the spec's MSB-first prints).
// CMAC: RFC 4493 section 4 test vectors (also in the same Bumble test).
enum AppendixD {
    static let privateA = hex("3f49f6d4 a3c55f38 74c9b3e3 d2103f50 4aff607b eb40b799 5899b8a6 cd3c1abd")
    static let privateB = hex("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
    static let publicAX = hex("20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6")
    static let publicAY = hex("dc809c49 652aeb6d 63329abf 5a52155c 766345c2 8fed3024 741c8ed0 1589d28b")
    static let publicBX = hex("1ea1f0f0 1faf1d96 09592284 f19e4c00 47b58afd 8615a69f 559077b2 2faaa190")
    static let publicBY = hex("4c55f33e 429dad37 7356703a 9ab85160 472d1130 e28e3676 5f89aff9 15b1214a")
    static let dhKey = hex("ec0234a3 57c8ad05 341010a6 0a397d9b 99796b13 b4f866f1 868d34f3 73bfa698")
    // f4/g2 use U and V exactly as D.2/D.5 print them.
    static let u = publicAX
    static let v = hex("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
    static let n1 = hex("d5cb8454 d177733e ffffb2ec 712baeab")
    static let n2 = hex("a6e8e7cc 25a75f6e 216583f7 ff3dc4cf")
    static let a1 = hex("00561237 37bfce")
    static let a2 = hex("00a71370 2dcfc1")
    static let macKey = hex("2965f176 a1084a02 fd3f6a20 ce636e20")
    static let ltk = hex("69867911 69d7cd23 980522b5 94750a38")
    static let irk = hex("ec0234a3 57c8ad05 341010a6 0a397d9b")
}

@Suite struct SMPToolboxTests {
    @Test func aesCMACMatchesRFC4493Vectors() throws {
        let k = hex("2b7e1516 28aed2a6 abf71588 09cf4f3c")
        let m64 = hex("6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51 30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710")
        #expect(try SMPToolbox.aesCMAC(key: k, message: []) == hex("bb1d6929 e9593728 7fa37d12 9b756746"))
        #expect(try SMPToolbox.aesCMAC(key: k, message: Array(m64[0..<16])) == hex("070a16b4 6b4d4144 f79bdd9d d04a287c"))
        #expect(try SMPToolbox.aesCMAC(key: k, message: Array(m64[0..<40])) == hex("dfa66747 de9ae630 30ca3261 1497c827"))
        #expect(try SMPToolbox.aesCMAC(key: k, message: m64) == hex("51f0bebf 7e3b9d92 fc497417 79363cfe"))
    }

    @Test func eIsAES128FIPS197Vector() throws {
        // FIPS-197 Appendix C.1.
        let out = try SMPToolbox.e(key: hex("000102030405060708090a0b0c0d0e0f"),
                                   plaintext: hex("00112233445566778899aabbccddeeff"))
        #expect(out == hex("69c4e0d86a7b0430d8cdb78070b4c55a"))
    }

    @Test func c1MatchesPartH223Example() throws {
        let out = try SMPToolbox.c1(k: [UInt8](repeating: 0, count: 16), r: hex("5783D52156AD6F0E6388274EC6702EE0"),
                                    preq: hex("07071000000101"), pres: hex("05000800000302"),
                                    iat: 1, ia: hex("A1A2A3A4A5A6"), rat: 0, ra: hex("B1B2B3B4B5B6"))
        #expect(out == hex("1e1e3fef878988ead2a74dc5bef13b86"))
    }

    @Test func s1MatchesPartH224Example() throws {
        let out = try SMPToolbox.s1(k: [UInt8](repeating: 0, count: 16), r1: hex("000F0E0D0C0B0A091122334455667788"),
                                    r2: hex("010203040506070899AABBCCDDEEFF00"))
        #expect(out == hex("9a1fe1f0e8b0f49b5b4216ae796da062"))
    }

    @Test func f4MatchesAppendixD2() throws {
        #expect(try SMPToolbox.f4(u: AppendixD.u, v: AppendixD.v, x: AppendixD.n1, z: 0) == hex("f2c916f1 07a9bd1c f1eda1be a974872d"))
    }

    @Test func f5MatchesAppendixD3() throws {
        let out = try SMPToolbox.f5(w: AppendixD.dhKey, n1: AppendixD.n1, n2: AppendixD.n2, a1: AppendixD.a1, a2: AppendixD.a2)
        #expect(out.macKey == AppendixD.macKey)
        #expect(out.ltk == AppendixD.ltk)
    }

    @Test func f6MatchesAppendixD4() throws {
        let out = try SMPToolbox.f6(w: AppendixD.macKey, n1: AppendixD.n1, n2: AppendixD.n2,
                                    r: hex("12a3343b b453bb54 08da42d2 0c2d0fc8"), ioCap: hex("010102"),
                                    a1: AppendixD.a1, a2: AppendixD.a2)
        #expect(out == hex("e3c47398 9cd0e8c5 d26c0b09 da958f61"))
    }

    @Test func g2MatchesAppendixD5() throws {
        #expect(try SMPToolbox.g2(u: AppendixD.u, v: AppendixD.v, x: AppendixD.n1, y: AppendixD.n2) == 0x2F9E_D5BA)
    }

    @Test func h6MatchesAppendixD6() throws {
        #expect(try SMPToolbox.h6(w: AppendixD.irk, keyID: hex("6c656272")) == hex("2d9ae102 e76dc91c e8d3a9e2 80b16399"))
    }

    @Test func h7MatchesAppendixDSample() throws {
        #expect(try SMPToolbox.h7(salt: hex("00000000 00000000 00000000 746D7031"), w: AppendixD.irk)
                == hex("fb173597 c6a3c0ec d2998c2a 75a57011"))
    }

    @Test func ahMatchesAppendixD7() throws {
        #expect(try SMPToolbox.ah(irk: AppendixD.irk, r: hex("708194")) == hex("0dfbaa"))
    }

    @Test func p256DHKeyMatchesAppendixD1BothWays() throws {
        let a = try #require(SMPToolbox.privateKey(scalar: AppendixD.privateA))
        let b = try #require(SMPToolbox.privateKey(scalar: AppendixD.privateB))
        #expect(SMPToolbox.publicKeyCoordinates(a).x == AppendixD.publicAX)
        #expect(SMPToolbox.publicKeyCoordinates(a).y == AppendixD.publicAY)
        #expect(SMPToolbox.publicKeyCoordinates(b).x == AppendixD.publicBX)
        #expect(SMPToolbox.dhKey(privateKey: a, peerX: AppendixD.publicBX, peerY: AppendixD.publicBY) == AppendixD.dhKey)
        #expect(SMPToolbox.dhKey(privateKey: b, peerX: AppendixD.publicAX, peerY: AppendixD.publicAY) == AppendixD.dhKey)
    }

    @Test func dhKeyRejectsPointOffTheCurve() throws {
        let a = try #require(SMPToolbox.privateKey(scalar: AppendixD.privateA))
        var badY = AppendixD.publicBY
        badY[31] ^= 1
        #expect(SMPToolbox.dhKey(privateKey: a, peerX: AppendixD.publicBX, peerY: badY) == nil)
        #expect(SMPToolbox.dhKey(privateKey: a, peerX: [UInt8](repeating: 0, count: 32), peerY: [UInt8](repeating: 0, count: 32)) == nil)
    }

    @Test func wrongLengthInputThrowsNamingTheParameter() {
        #expect(throws: SMPToolboxError(parameter: "irk", expected: 16, actual: 15)) {
            try SMPToolbox.ah(irk: [UInt8](repeating: 0, count: 15), r: [1, 2, 3])
        }
        #expect(throws: SMPToolboxError(parameter: "a2", expected: 7, actual: 6)) {
            try SMPToolbox.f5(w: AppendixD.dhKey, n1: AppendixD.n1, n2: AppendixD.n2, a1: AppendixD.a1, a2: [0, 1, 2, 3, 4, 5])
        }
        #expect(throws: SMPToolboxError(parameter: "preq", expected: 7, actual: 0)) {
            try SMPToolbox.c1(k: [UInt8](repeating: 0, count: 16), r: [UInt8](repeating: 0, count: 16), preq: [],
                              pres: [UInt8](repeating: 0, count: 7), iat: 0, ia: [UInt8](repeating: 0, count: 6),
                              rat: 0, ra: [UInt8](repeating: 0, count: 6))
        }
    }
}

@Suite struct PrivateAddressTests {
    @Test func appendixD7AddressResolves() throws {
        // MSB-first address prand || hash = 70:81:94:0D:FB:AA (prand top bits 01).
        let addr = try #require(BDAddress("70:81:94:0D:FB:AA"))
        #expect(resolvePrivateAddress(addr, irk: AppendixD.irk))
        #expect(try makeResolvablePrivateAddress(irk: AppendixD.irk, prand: hex("708194")) == addr)
    }

    @Test func otherIRKOrFlippedHashDoesNotResolve() throws {
        let addr = try makeResolvablePrivateAddress(irk: AppendixD.irk, prand: hex("4a1b2c"))
        #expect(resolvePrivateAddress(addr, irk: AppendixD.irk))
        var other = AppendixD.irk
        other[0] ^= 0xFF
        #expect(!resolvePrivateAddress(addr, irk: other))
        var bytes = addr.bytes
        bytes[0] ^= 1
        #expect(!resolvePrivateAddress(try #require(BDAddress(wireBytes: bytes)), irk: AppendixD.irk))
    }

    @Test func onlyResolvablePrivateAddressesResolve() throws {
        // Same 48 bits with the top bits changed to static (11): not an RPA, never resolves.
        let staticAddr = try #require(BDAddress("F0:81:94:0D:FB:AA"))
        #expect(!resolvePrivateAddress(staticAddr, irk: AppendixD.irk))
        #expect(!resolvePrivateAddress(try #require(BDAddress("70:81:94:0D:FB:AA")), irk: [1, 2, 3]))
    }
}
