# One image with the three executables; docker-compose.yml runs each.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev \
      libboost1.81-dev libboost-json1.81-dev libabsl-dev libspdlog-dev \
      libjwt-dev libssl-dev libcurl4-openssl-dev libjemalloc-dev prometheus-cpp-dev \
      libsqlite3-dev libpq-dev libhiredis-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHAT_TESTS=OFF \
    && cmake --build /build --target connection-service message-service edge

FROM debian:12
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libspdlog1.10 libboost-json1.81.0 \
      libjwt0 libssl3 libcurl4 libjemalloc2 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libsqlite3-0 libpq5 libhiredis0.14 \
      ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home chat \
    && install -d -o chat -g chat /var/lib/chat
COPY --from=build /build/connection-service/connection-service /build/message-service/message-service \
     /build/edge/edge /usr/local/bin/
COPY edge/web /usr/share/chat/web
USER chat
# Each service's command is chosen in docker-compose.yml.
CMD ["edge"]
