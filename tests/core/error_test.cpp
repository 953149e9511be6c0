#include <simul/core/error.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <type_traits>

TEST(Errors, AllDeriveFromSimulErrorAndRuntimeError) {
  static_assert(std::is_base_of_v<std::runtime_error, simul::error>);
  static_assert(std::is_base_of_v<simul::error, simul::cancelled_error>);
  static_assert(std::is_base_of_v<simul::error, simul::timeout_error>);
  static_assert(std::is_base_of_v<simul::error, simul::broken_executor>);
  static_assert(std::is_base_of_v<simul::error, simul::worker_crashed>);
  static_assert(std::is_base_of_v<simul::error, simul::remote_error>);
  static_assert(std::is_base_of_v<simul::error, simul::future_error>);
  SUCCEED();
}

TEST(Errors, WorkerCrashedBySignalNamesPidSignalAndTask) {
  const simul::worker_crashed e(1234, SIGKILL, -1, "square(7)");
  EXPECT_EQ(e.pid(), 1234);
  EXPECT_EQ(e.signal(), SIGKILL);
  EXPECT_EQ(e.exit_code(), -1);
  EXPECT_EQ(e.task(), "square(7)");
  const std::string what = e.what();
  EXPECT_NE(what.find("1234"), std::string::npos) << what;
  EXPECT_NE(what.find("signal 9"), std::string::npos) << what;
  EXPECT_NE(what.find("square(7)"), std::string::npos) << what;
}

TEST(Errors, WorkerCrashedByExitNamesTheStatus) {
  const simul::worker_crashed e(77, 0, 3, "");
  EXPECT_EQ(std::string(e.what()), "worker 77 exited with status 3");
}

TEST(Errors, RemoteErrorKeepsTypeMessageAndTrace) {
  const simul::remote_error e("std::out_of_range", "vector::at", "worker 5");
  EXPECT_EQ(e.type_name(), "std::out_of_range");
  EXPECT_EQ(e.message(), "vector::at");
  EXPECT_EQ(e.trace(), "worker 5");
  EXPECT_EQ(std::string(e.what()), "std::out_of_range: vector::at");
}

TEST(Errors, BrokenExecutorCarriesItsCause) {
  const simul::broken_executor plain("shut down");
  EXPECT_EQ(plain.cause(), nullptr);
  const simul::broken_executor caused("initializer failed", std::make_exception_ptr(std::runtime_error("no db")));
  ASSERT_NE(caused.cause(), nullptr);
  EXPECT_THROW(std::rethrow_exception(caused.cause()), std::runtime_error);
}

TEST(Errors, FutureErrorMessagesSayWhatWentWrong) {
  EXPECT_NE(std::string(simul::future_error(simul::future_errc::broken_promise).what()).find("broken promise"),
            std::string::npos);
  EXPECT_NE(std::string(simul::future_error(simul::future_errc::value_already_retrieved).what()).find("get()"),
            std::string::npos);
  EXPECT_EQ(simul::future_error(simul::future_errc::no_state).code(), simul::future_errc::no_state);
  EXPECT_STREQ(simul::cancelled_error().what(), "operation was cancelled");
  EXPECT_STREQ(simul::timeout_error("late").what(), "late");
}

TEST(Describe, NamesTheDemangledTypeAndTheMessage) {
  const auto error = std::make_exception_ptr(std::invalid_argument("bad width"));
  const auto text = simul::describe_exception(error);
  EXPECT_EQ(text.type, "std::invalid_argument");
  EXPECT_EQ(text.message, "bad width");
  EXPECT_EQ(simul::describe(error), "std::invalid_argument: bad width");
}

TEST(Describe, TellsALibraryErrorByItsQualifiedName) {
  EXPECT_EQ(simul::describe(std::make_exception_ptr(simul::serialization_error("cut short"))),
            "simul::serialization_error: cut short");
}

TEST(Describe, CopesWithNonStdExceptionsAndNull) {
  const auto text = simul::describe_exception(std::make_exception_ptr(42));
  EXPECT_EQ(text.type, "int");
  EXPECT_EQ(text.message, "(not a std::exception)");
  EXPECT_EQ(simul::describe(nullptr), "");
  EXPECT_TRUE(simul::describe_exception(nullptr).type.empty());
}
