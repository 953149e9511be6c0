#pragma once

// gtest's ASSERT_* macros `return`, which a coroutine cannot: these end a
// task<void> test body with co_return instead.

#include <gtest/gtest.h>

#define CO_ASSERT_TRUE(cond)                                                                                           \
  if (!(cond)) {                                                                                                       \
    ADD_FAILURE() << "assertion failed: " #cond;                                                                       \
    co_return;                                                                                                         \
  }
#define CO_ASSERT_EQ(a, b) CO_ASSERT_TRUE((a) == (b))
#define CO_ASSERT_FALSE(cond) CO_ASSERT_TRUE(!(cond))
