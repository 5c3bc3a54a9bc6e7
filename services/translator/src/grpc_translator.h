#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>

#include "translator.h"

namespace omniroute::translator {

// The translator.v1.Translator gRPC service over an implementation. TranslateStream answers
// exactly one StreamChunk per chunk it receives (possibly with empty data) and finishes after
// answering the chunk marked `last`.
std::unique_ptr<grpc::Service> MakeTranslatorGrpcService(TranslatorPtr impl);

// A Translator that calls a remote translator service over `channel`. Each OpenStream() is
// one TranslateStream call; destroying the StreamTranslation before its last chunk cancels it.
TranslatorPtr MakeTranslatorGrpcClient(std::shared_ptr<grpc::Channel> channel);

}  // namespace omniroute::translator
