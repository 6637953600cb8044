import IoMTSMP
import Testing

/// Values computed by a real peer implementation, Bumble 0.0.236 (`bumble.crypto`, PyPI), on inputs
/// none of the spec samples use (SHA-256-derived bytes), recorded here so `swift test` needs no Python.
/// The script below was run once with /work/main/.venv/bin/python; Bumble stores values LSB first,
/// so it reverses inputs and outputs. Everything in this file is MSB first.
// The generating script (python3 with bumble==0.0.236 installed):
//     # Cross-check inputs for IoMTSMP: computes Bumble 0.0.236's toolbox on fixed inputs.
//     # Inputs and outputs printed MSB first (Bumble stores values LSB first, so we reverse).
//     import hashlib
//     from bumble import crypto
//     def det(label, n):
//         return hashlib.sha256(label.encode()).digest()[:n] if n <= 32 else (hashlib.sha256(label.encode()).digest() + hashlib.sha256((label+'2').encode()).digest())[:n]
//     R = lambda b: bytes(b)[::-1]
//     h = lambda b: b.hex()
//     k = det('k', 16); r = det('r', 16); preq = det('preq', 7); pres = det('pres', 7); ia = det('ia', 6); ra = det('ra', 6)
//     print('c1', h(k), h(r), h(preq), h(pres), h(ia), h(ra), h(R(crypto.c1(R(k), R(r), R(preq), R(pres), 1, 0, R(ia), R(ra)))))
//     r2 = det('r2', 16)
//     print('s1', h(k), h(r), h(r2), h(R(crypto.s1(R(k), R(r), R(r2)))))
//     u = det('u', 32); v = det('v', 32); x = det('x', 16); y = det('y', 16)
//     print('f4', h(u), h(v), h(x), h(R(crypto.f4(R(u), R(v), R(x), bytes([0x81])))))
//     w = det('w', 32); a1 = bytes([1]) + det('a1', 6); a2 = bytes([0]) + det('a2', 6)
//     mk, ltk = crypto.f5(R(w), R(x), R(y), R(a1), R(a2))
//     print('f5', h(w), h(x), h(y), h(a1), h(a2), h(R(mk)), h(R(ltk)))
//     io = bytes([0x2d, 0x00, 0x04])
//     print('f6', h(k), h(x), h(y), h(r), h(io), h(a1), h(a2), h(R(crypto.f6(R(k), R(x), R(y), R(r), R(io), R(a1), R(a2)))))
//     print('g2', h(u), h(v), h(x), h(y), '%08x' % crypto.g2(R(u), R(v), R(x), R(y)))
//     prand = bytes([0x5a, 0x11, 0x22])
//     print('ah', h(k), h(prand), h(R(crypto.ah(R(k), R(prand)))))
//     print('cmac', h(k), h(det('m', 37)), h(crypto.aes_cmac(det('m', 37), k)))
@Suite struct BumbleInteropTests {
    static let k = hex("8254c329a92850f6d539dd376f4816ee")
    static let r = hex("454349e422f05297191ead13e21d3db5")
    static let u = hex("0bfe935e70c321c7ca3afc75ce0d0ca2f98b5422e008bb31c00c6d7f1f1c0ad6")
    static let v = hex("4c94485e0c21ae6c41ce1dfe7b6bfaceea5ab68e40a2476f50208e526f506080")
    static let x = hex("2d711642b726b04401627ca9fbac32f5")
    static let y = hex("a1fce4363854ff888cff4b8e7875d600")
    static let a1 = hex("01f55ff16f66f4")
    static let a2 = hex("002c3a4249d770")

    @Test func c1AgreesWithBumble() throws {
        #expect(try SMPToolbox.c1(k: Self.k, r: Self.r, preq: hex("394498b4395917"), pres: hex("77cf6a9be9777b"),
                                  iat: 1, ia: hex("26138d8a757d"), rat: 0, ra: hex("37e7702e5ce4"))
                == hex("d730b26277ee7e3e445b9298b0ee3970"))
    }

    @Test func s1AgreesWithBumble() throws {
        #expect(try SMPToolbox.s1(k: Self.k, r1: Self.r, r2: hex("db77fd01af957221a4989b64b3770a83"))
                == hex("eb7e9757065413860c4c56ccb2925652"))
    }

    @Test func f4AgreesWithBumble() throws {
        #expect(try SMPToolbox.f4(u: Self.u, v: Self.v, x: Self.x, z: 0x81) == hex("eb39bcde093e66675b6f79e7faf55202"))
    }

    @Test func f5AgreesWithBumble() throws {
        let out = try SMPToolbox.f5(w: hex("50e721e49c013f00c62cf59f2163542a9d8df02464efeb615d31051b0fddc326"),
                                    n1: Self.x, n2: Self.y, a1: Self.a1, a2: Self.a2)
        #expect(out.macKey == hex("a1adc0956b76548aeee6a88cfc8f0cc0"))
        #expect(out.ltk == hex("f5ad66d8bf09a8e536ffccce46fe2ba6"))
    }

    @Test func f6AgreesWithBumble() throws {
        #expect(try SMPToolbox.f6(w: Self.k, n1: Self.x, n2: Self.y, r: Self.r, ioCap: hex("2d0004"), a1: Self.a1, a2: Self.a2)
                == hex("0ce0967da4321a61a742cf728b798754"))
    }

    @Test func g2AgreesWithBumble() throws {
        #expect(try SMPToolbox.g2(u: Self.u, v: Self.v, x: Self.x, y: Self.y) == 0x0DCD_AFC5)
    }

    @Test func ahAgreesWithBumble() throws {
        #expect(try SMPToolbox.ah(irk: Self.k, r: hex("5a1122")) == hex("073cb4"))
    }

    @Test func cmacOfUnalignedMessageAgreesWithBumble() throws {
        let m = hex("62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a29c1b289e7")
        #expect(try SMPToolbox.aesCMAC(key: Self.k, message: m) == hex("0cc3e93a44ff110143bd0368f4b7d49e"))
    }
}
