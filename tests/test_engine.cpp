// The elastic engine without libtorch: format cache, switching, determinism, sampling.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

using namespace mfqat;

namespace {

model::LmConfig small() { return small_lm(48); }

std::vector<int> prompt() { return {'E', 'm', 'm', 'a', ' ', 'W', 'o', 'o', 'd', 'h', 'o', 'u', 's', 'e'}; }

}  // namespace

TEST(Engine, SwitchingFormatsEqualsAFreshEngineAndTheCacheCountsBytes) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 3);
  std::vector<std::vector<float>> first;
  for (const char* f : {"mxint8", "mxint4", "mxint2", "fp32"}) {
    runtime::Session s(*e, e->weights(f));
    first.push_back(s.feed(prompt()));
  }
  EXPECT_EQ(e->cache().size(), 4u);
  const auto w4 = e->weights("mxint4");
  EXPECT_EQ(w4->linear_bytes, 2u * (4 * 64 * (32 + 2) + 3 * 192 * (32 + 2)));  // 64x64 and 192x64 at 4.25 bits
  EXPECT_EQ(e->weights("mxint4").get(), w4.get());  // a cache hit, not a rebuild
  // the arena, plus the int8 GEMM's panels where its 512-bit kernel runs here (4-bit: per 16 rows
  // and block, 256 bytes of codes and 64 of scales)
  const bool panels = runtime::repack_q8(runtime::view(mx::quantize(mx::find_format("mxint4"), std::vector<float>(64, 0.5f).data(), 2, 32)),
                                         e->kernels()) != nullptr;
  EXPECT_EQ(w4->panel_bytes, panels ? 2u * (4 * 4 * 2 * 320 + 3 * 12 * 2 * 320) : 0u);
  EXPECT_EQ(w4->owned_bytes, w4->linear_bytes + w4->panel_bytes);
  EXPECT_EQ(e->weights("mxint8")->owned_bytes, e->weights("mxint8")->panel_bytes);  // the anchor's own format borrows the anchor
  auto fresh = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 3);
  int i = 0;
  for (const char* f : {"mxint8", "mxint4", "mxint2", "fp32"}) {
    runtime::Session s(*fresh, fresh->weights(f));
    EXPECT_EQ(s.feed(prompt()), first[static_cast<std::size_t>(i++)]) << f;
  }
  EXPECT_NE(first[0], first[1]);
  // A budget keeps the most recent formats only.
  e->set_cache_budget(w4->owned_bytes * 3 / 2);
  e->weights("mxint3");
  EXPECT_LE(e->cache_bytes(), w4->owned_bytes * 3 / 2);
  EXPECT_EQ(e->cache().front().format, "mxint3");
  EXPECT_THROW(e->weights("mxfp4"), std::invalid_argument);   // across families
  EXPECT_THROW(e->weights("mxint9"), std::invalid_argument);  // not a format
}

TEST(Engine, GreedyGenerationIsIdenticalAcrossRunsAndThreadCounts) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxfp8_e4m3"), 4);
  const int t = num_threads();
  std::vector<std::string> outs;
  for (int threads : {1, 2, 1}) {
    set_num_threads(threads);
    outs.push_back(runtime::generate(*e, e->weights("mxfp4"), "Emma", 30, {}).text);
  }
  set_num_threads(t);
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0], outs[2]);
  EXPECT_EQ(outs[0].size(), 30u);
  // Sampling: same seed, same text; another seed, (almost surely) another text.
  runtime::SamplingOptions s;
  s.temperature = 1.0;
  s.top_k = 40;
  s.top_p = 0.95;
  s.seed = 7;
  const auto a = runtime::generate(*e, e->weights("mxfp4"), "Emma", 30, s).text;
  EXPECT_EQ(a, runtime::generate(*e, e->weights("mxfp4"), "Emma", 30, s).text);
  s.seed = 8;
  EXPECT_NE(a, runtime::generate(*e, e->weights("mxfp4"), "Emma", 30, s).text);
  // The sequence stops at max_seq.
  EXPECT_EQ(runtime::generate(*e, e->weights("mxfp4"), "Emma", 100, {}).text.size(), 48u - 4u + 1u);
  EXPECT_THROW(runtime::generate(*e, e->weights("mxfp4"), std::string(49, 'x'), 1, {}), std::invalid_argument);
}

TEST(Engine, SharedDecodeGemvsGiveTheLogitsOfOneGemvPerLinear) {
  // Q/K/V and W1/W3 in one gemv_shared call each (the default) against one gemv per linear:
  // token by token, the same bits, for a fixed-point 4-bit format, MXINT8 and fp32 (which has
  // no shared call).
  for (const char* anchor : {"mxint8", "mxfp8_e4m3"}) {
    auto e = runtime::Engine::synthetic(small(), mx::find_format(anchor), 6);
    for (const char* f : {std::string(anchor) == "mxint8" ? "mxint4" : "mxfp4", anchor, "fp32"}) {
      std::vector<std::vector<float>> logits[2];
      for (const bool shared : {true, false}) {
        e->set_shared_decode(shared);
        runtime::Session s(*e, e->weights(f));
        for (int t : prompt()) logits[shared ? 0 : 1].push_back(s.feed({t}));
      }
      e->set_shared_decode(true);
      ASSERT_EQ(logits[0].size(), prompt().size());
      for (std::size_t t = 0; t < logits[0].size(); ++t) {
        ASSERT_EQ(0, std::memcmp(logits[0][t].data(), logits[1][t].data(), logits[0][t].size() * 4)) << anchor << " " << f << " token " << t;
      }
    }
  }
}

TEST(Engine, SamplerRespectsTopKAndGreedy) {
  std::vector<float> logits = {0.0f, 5.0f, 4.9f, -3.0f};
  runtime::Sampler greedy({});
  EXPECT_EQ(greedy.sample(logits), 1);
  runtime::SamplingOptions o;
  o.temperature = 2.0;
  o.top_k = 2;
  runtime::Sampler s(o);
  for (int i = 0; i < 200; ++i) {
    const int t = s.sample(logits);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

TEST(Engine, Int8ActivationsAreCloseToFp32AndDeterministic) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 9);
  for (const char* f : {"mxint8", "mxint4", "mxint6"}) {  // mxint6 has no int8 path: unchanged
    runtime::Session a(*e, e->weights(f));
    std::vector<float> exact;
    for (int t : prompt()) exact = a.feed({t});
    e->set_int8_activations(true);
    runtime::Session b(*e, e->weights(f));
    std::vector<float> q8;
    for (int t : prompt()) q8 = b.feed({t});
    e->set_int8_activations(false);
    float scale = 0, diff = 0;
    for (std::size_t i = 0; i < exact.size(); ++i) {
      scale = std::max(scale, std::fabs(exact[i]));
      diff = std::max(diff, std::fabs(exact[i] - q8[i]));
    }
    if (std::string(f) == "mxint6") {
      EXPECT_EQ(diff, 0.0f);
    } else {
      EXPECT_GT(diff, 0.0f) << f;            // a different path ran
      EXPECT_LT(diff, 0.03f * scale) << f;   // activation rounding, through 2 layers
    }
  }
  e->set_int8_activations(true);
  const int t = num_threads();
  set_num_threads(1);
  const auto one = runtime::generate(*e, e->weights("mxint4"), "Emma", 20, {}).text;
  set_num_threads(2);
  EXPECT_EQ(one, runtime::generate(*e, e->weights("mxint4"), "Emma", 20, {}).text);
  set_num_threads(t);
}

TEST(Engine, DerivedWeightsLiveInOneArenaAndTheAnchorsOwnFormatBorrowsIt) {
  // Buffers from 8 MiB up are 2 MiB-aligned (huge-page advice), smaller ones 64-byte aligned.
  const runtime::HugeBuffer small_buf(1000), big_buf(std::size_t{9} << 20);
  EXPECT_FALSE(small_buf.huge());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small_buf.as<void>()) % 64, 0u);
  EXPECT_GE(small_buf.bytes(), 1000u);
  EXPECT_TRUE(big_buf.huge());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big_buf.as<void>()) % (std::uintptr_t{2} << 20), 0u);
  EXPECT_EQ(big_buf.bytes(), std::uint64_t{10} << 20);
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 3);
  for (const char* f : {"mxint4", "mxint6", "fp32"}) {
    const auto w = e->weights(f);
    ASSERT_TRUE(w->arena) << f;
    const auto* lo = w->arena->as<std::uint8_t>();
    const auto* hi = lo + w->arena->bytes();
    auto inside = [&](const void* p) { return static_cast<const std::uint8_t*>(p) >= lo && static_cast<const std::uint8_t*>(p) < hi; };
    for (const auto& L : w->layers) {
      for (const runtime::Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) {
        if (l->is_mx) {
          EXPECT_TRUE(inside(l->mx.elements) && inside(l->mx.scales)) << f;
          EXPECT_EQ(reinterpret_cast<std::uintptr_t>(l->mx.elements) % 64, 0u) << f;
          EXPECT_EQ(l->mx.format->name, f);
        } else {
          EXPECT_TRUE(inside(l->f32)) << f;
        }
      }
    }
    EXPECT_EQ(w->owned_bytes, w->arena->bytes() + w->panel_bytes) << f;
  }
  const auto anchor = e->weights("mxint8");
  EXPECT_FALSE(anchor->arena);
  EXPECT_EQ(anchor->owned_bytes, anchor->panel_bytes);  // only the GEMM panels, where made
  // without them (--no-repack) nothing but the arena
  auto k = e->kernels();
  k.repack = false;
  auto bare = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 5);
  bare->set_kernels(k);
  EXPECT_EQ(bare->weights("mxint8")->owned_bytes, 0u);
  EXPECT_EQ(bare->weights("mxint4")->owned_bytes, bare->weights("mxint4")->arena->bytes());
}

TEST(Engine, SessionsTakeKvPagesAsTheyGrowLeaveThemToTheNextAndNothingOfThemLeaks) {
  const model::LmConfig c = small_lm(200);  // 4 pages of 64 positions, the last one partly used
  auto e = runtime::Engine::synthetic(c, mx::find_format("mxint8"), 5);
  auto fresh = runtime::Engine::synthetic(c, mx::find_format("mxint8"), 5);
  const auto page = static_cast<std::uint64_t>(2 * c.n_layers * runtime::kKvPageTokens * c.kv_dim() * 4);  // K and V floats
  ASSERT_EQ(e->kv_pool().page_bytes(), page);  // a small page: not rounded up to huge pages
  EXPECT_EQ(e->kv_reserve_bytes(1), page);
  EXPECT_EQ(e->kv_reserve_bytes(64), page);
  EXPECT_EQ(e->kv_reserve_bytes(65), 2 * page);
  EXPECT_EQ(e->kv_reserve_bytes(100000), 4 * page);  // at most the context
  EXPECT_EQ(e->idle_kv_bytes(), 0u);
  {
    runtime::Session a(*e, e->weights("mxint4"));  // capacity: the whole context
    EXPECT_EQ(e->held_kv_bytes(), 0u);             // nothing taken before a position is written
    a.feed(std::vector<int>(40, 'z'));
    EXPECT_EQ(e->held_kv_bytes(), page);
    a.feed(std::vector<int>(24, 'z'));  // positions 40..63: still the first page
    EXPECT_EQ(e->held_kv_bytes(), page);
    a.feed({'z'});  // position 64
    EXPECT_EQ(e->held_kv_bytes(), 2 * page);
    a.feed(std::vector<int>(100, 'y'));  // to 165: 3 pages
    EXPECT_EQ(e->held_kv_bytes(), 3 * page);
  }
  EXPECT_EQ(e->held_kv_bytes(), 0u);
  EXPECT_EQ(e->idle_kv_bytes(), 3 * page);  // kept: the default idle limit is one full context
  // The next session takes those pages (in another order than they were filled); its logits are
  // those of a session on a fresh engine, token by token across three pages (positions are
  // written before they are read: nothing of the old sequence shows through).
  std::vector<int> text;
  for (int i = 0; i < 150; ++i) text.push_back("Emma Woodhouse, handsome, clever, and rich"[i % 42]);
  std::vector<float> reused, clean;
  {
    runtime::Session b(*e, e->weights("mxint4"));
    for (int t : text) reused = b.feed({t});
    EXPECT_EQ(e->idle_kv_bytes(), 0u);  // all three taken
    EXPECT_EQ(e->held_kv_bytes(), 3 * page);
  }
  {
    runtime::Session s(*fresh, fresh->weights("mxint4"));
    for (int t : text) clean = s.feed({t});
  }
  EXPECT_EQ(reused, clean);
  // Two at once take pages of their own; the idle limit decides what stays when they end.
  e->set_idle_kv_bytes(page);
  EXPECT_EQ(e->idle_kv_bytes(), page);  // the limit frees the rest at once
  {
    runtime::Session a(*e, e->weights("mxint8")), b(*e, e->weights("mxint8"));
    a.feed(std::vector<int>(70, 'a'));
    b.feed(prompt());
    EXPECT_EQ(e->held_kv_bytes(), 3 * page);
    EXPECT_EQ(e->idle_kv_bytes(), 0u);
  }
  EXPECT_EQ(e->idle_kv_bytes(), page);
  e->set_idle_kv_bytes(0);  // frees them
  EXPECT_EQ(e->idle_kv_bytes(), 0u);
  {
    runtime::Session a(*e, e->weights("mxint8"));
    a.feed(prompt());
  }
  EXPECT_EQ(e->idle_kv_bytes(), 0u);
  EXPECT_EQ(e->held_kv_bytes(), 0u);
}

TEST(Engine, ChunkedPrefillGivesTheBitsOfOnePrefillAndTracksTokenByTokenAt2048Positions) {
  // Chunks of >= 2 tokens: every MX product row and every query's attention is computed on its
  // own, so any ubatch gives the bits of one prefill (a chunk of 1 token would take the decode
  // path, with fp32 activations: not asserted bitwise).
  const std::int64_t T = 2048;
  std::vector<int> toks(static_cast<std::size_t>(T));
  std::uint32_t r = 7;
  for (auto& t : toks) t = static_cast<int>((r = r * 1103515245u + 12345u) >> 24);
  for (const char* anchor : {"mxint8", "mxfp8_e4m3"}) {
    auto e = runtime::Engine::synthetic(small_lm(T), mx::find_format(anchor), 9);
    for (const char* f : {std::string(anchor) == "mxint8" ? "mxint4" : "mxfp4", anchor}) {
      runtime::KernelOptions k;
      e->set_kernels(k);
      const std::vector<int> head(toks.begin(), toks.begin() + 60);  // no chunk of 1 token for these ubatch values
      // The fp32 head runs OpenBLAS's sgemm, whose summation order may depend on the number of
      // rows: the prefill's own logits within 1e-6; the KV cache (everything the MX kernels and
      // attention computed) bit for bit, seen through the next decode step's logits.
      std::vector<float> one, next;
      {
        runtime::Session s(*e, e->weights(f));
        one = s.feed_all(head);
        next = s.feed({'x'});
      }
      for (std::int64_t ub : {2, 7, 16, 60}) {
        k.ubatch = ub;
        e->set_kernels(k);
        runtime::Session s(*e, e->weights(f));
        const auto chunked = s.feed_all(head);
        ASSERT_EQ(chunked.size(), one.size());
        EXPECT_LT(max_rel(chunked, one), 1e-6) << anchor << " " << f << " ubatch " << ub;
        const auto after = s.feed({'x'});
        ASSERT_EQ(0, std::memcmp(after.data(), next.data(), next.size() * 4)) << anchor << " " << f << " ubatch " << ub;
      }
      // 2048 positions in chunks of 512 against 2048 decode steps: fp32 activations within the
      // summation-order bound; int8 (bf16 for MXFP8) prompt activations within their rounding
      // (this random model's logits are large: measured 2.9e-2 to 3.2e-2 for int8, 1.1e-2 for
      // bf16; the held-out perplexity cost: docs/numerics.md)
      std::vector<float> steps;
      {
        runtime::Session s(*e, e->weights(f));
        for (int t : toks) {
          const auto l = s.feed({t});
          steps.insert(steps.end(), l.begin(), l.end());
        }
      }
      for (const bool int8 : {false, true}) {
        runtime::KernelOptions kk;
        kk.int8_gemm = int8;
        kk.bf16_gemm = int8;
        kk.ubatch = 512;
        e->set_kernels(kk);
        runtime::Session s(*e, e->weights(f));
        const auto pre = s.feed_all(toks);
        ASSERT_EQ(pre.size(), steps.size());
        const double d = max_rel(pre, steps);
        std::printf("[ prefill  ] %s %s %s activations: max |prefill - decode| / max |logit| = %.2e over %lld positions\n", anchor, f,
                    int8 ? "int8" : "fp32", d, static_cast<long long>(T));
        const bool rounded = runtime::gemm_q8_active(mx::find_format(f), kk) || runtime::gemm_bf16_active(mx::find_format(f), kk);
        EXPECT_LT(d, int8 && rounded ? 5e-2 : 1e-4) << anchor << " " << f;
      }
      e->set_kernels(runtime::KernelOptions{});
    }
  }
  runtime::KernelOptions bad;
  bad.ubatch = 0;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

TEST(Engine, BatchedStepGivesEachSessionWhatItGetsInAnyOtherBatch) {
  // Continuous batching runs several sessions' tokens as one step. Every row is computed on its
  // own, so a session's logits and KV cache are the same bits in any batch of >= 2 rows (here:
  // alone with an unrelated dummy session); against the session fed alone (1 row: the GEMV),
  // within the int8 activations' rounding or the fp32 summation-order bound.
  auto e = runtime::Engine::synthetic(small_lm(128), mx::find_format("mxint8"), 11);
  const std::vector<std::vector<int>> prompts = {{1, 2, 3, 4, 5}, {9, 8, 7, 6, 5, 4, 3, 2, 1}, {42, 43, 44}};
  const std::vector<std::vector<int>> pieces = {{10, 11, 12}, {13}, {14, 15, 16, 17}};
  const std::vector<int> dummy = {100, 101};
  const int saved_threads = num_threads();
  for (const char* f : {"mxint4", "mxint8"}) {
    for (const bool int8 : {true, false}) {
      for (const int threads : {1, 3, 8}) {
        set_num_threads(threads);
        runtime::KernelOptions k;
        k.int8_gemm = int8;
        e->set_kernels(k);
        const auto w = e->weights(f);
        std::vector<std::vector<float>> ref(3), ref_next(3), alone(3);
        for (std::size_t i = 0; i < 3; ++i) {
          runtime::Session s(*e, w), d(*e, w), a(*e, w);
          s.feed(prompts[i]);
          std::vector<std::vector<float>> out;
          runtime::Session::step({{&s, pieces[i].data(), static_cast<std::int64_t>(pieces[i].size()), true}, {&d, dummy.data(), 2, true}}, &out);
          ASSERT_EQ(out.size(), 2u);  // (the dummy's logits too: the head also runs on >= 2 rows)
          ref[i] = out[0];
          ref_next[i] = s.feed({'x'});
          a.feed(prompts[i]);
          alone[i] = a.feed(pieces[i]);
        }
        std::vector<std::unique_ptr<runtime::Session>> ss;
        std::vector<runtime::Session::Piece> ps;
        for (std::size_t i = 0; i < 3; ++i) {
          ss.push_back(std::make_unique<runtime::Session>(*e, w, 32));  // a cache of 32 positions is enough
          ss[i]->feed(prompts[i]);
          ps.push_back({ss[i].get(), pieces[i].data(), static_cast<std::int64_t>(pieces[i].size()), true});
        }
        runtime::Session none(*e, w);  // a piece whose logits are not wanted gets none
        ps.push_back({&none, dummy.data(), 2, false});
        std::vector<std::vector<float>> out;
        runtime::Session::step(ps, &out);
        ASSERT_EQ(out.size(), 4u);
        EXPECT_TRUE(out[3].empty());
        for (std::size_t i = 0; i < 3; ++i) {
          const std::string what = std::string(f) + (int8 ? " int8" : " fp32") + " threads " + std::to_string(threads) + " session " + std::to_string(i);
          ASSERT_EQ(out[i].size(), ref[i].size()) << what;
          EXPECT_EQ(0, std::memcmp(out[i].data(), ref[i].data(), ref[i].size() * 4)) << what;
          EXPECT_EQ(ss[i]->position(), static_cast<std::int64_t>(prompts[i].size() + pieces[i].size())) << what;
          const auto next = ss[i]->feed({'x'});
          EXPECT_EQ(0, std::memcmp(next.data(), ref_next[i].data(), next.size() * 4)) << what;
          EXPECT_LT(max_rel(out[i], alone[i]), int8 ? 5e-2 : 1e-5) << what;
        }
      }
    }
  }
  set_num_threads(saved_threads);
  e->set_kernels(runtime::KernelOptions{});
  // Bad steps change no session.
  const auto w4 = e->weights("mxint4"), w8 = e->weights("mxint8");
  runtime::Session a(*e, w4, 8), b(*e, w4), c(*e, w8);
  const std::vector<int> t5 = {1, 2, 3, 4, 5}, bad = {1, 300};
  auto throws = [&](const std::vector<runtime::Session::Piece>& ps, const std::string& needle) {
    std::vector<std::vector<float>> out;
    try {
      runtime::Session::step(ps, &out);
      ADD_FAILURE() << "no throw, wanted " << needle;
    } catch (const std::invalid_argument& ex) {
      EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
    }
    EXPECT_EQ(a.position(), 0);
    EXPECT_EQ(b.position(), 0);
    EXPECT_EQ(c.position(), 0);
  };
  throws({{&a, t5.data(), 5, true}, {&a, t5.data(), 1, true}}, "twice");
  throws({{&a, t5.data(), 5, true}, {&c, t5.data(), 1, true}}, "one format");
  throws({{&b, t5.data(), 5, true}, {&a, t5.data(), 5, true}, {&a, t5.data(), 5, true}}, "twice");
  throws({{&b, t5.data(), 1, true}, {&a, bad.data(), 2, true}}, "token 300");
  throws({{&b, t5.data(), 0, true}}, "no tokens");
  throws({}, "at least one");
  std::vector<int> nine(9, 7);
  throws({{&b, t5.data(), 1, true}, {&a, nine.data(), 9, true}}, "exceeds the context of 8");
  runtime::KernelOptions k;
  k.ubatch = 4;
  e->set_kernels(k);
  throws({{&b, t5.data(), 2, true}, {&a, t5.data(), 3, true}}, "exceeds ubatch 4");
  e->set_kernels(runtime::KernelOptions{});
  EXPECT_THROW(runtime::Session(*e, w4, 129), std::invalid_argument);
}
