# soundalike serve in a container: `docker build -t soundalike .`, then see README.md's "Container".
# Two stages: the build image compiles the binary (Rust and a C compiler: LMDB is built from source), and only
# the binary goes into a slim Debian of the same release, so that it finds the same glibc.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads, so that a change to the docs or the tests does not rebuild the binary.
COPY Cargo.toml Cargo.lock ./
# The Python package (python/) is a member of the workspace: cargo loads its manifest and sources even though
# only the binary is built here.
COPY python/Cargo.toml python/Cargo.toml
COPY python/src python/src
COPY src src
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/soundalike /out/soundalike

FROM docker.io/library/debian:bookworm-slim
COPY --from=build /out/soundalike /usr/local/bin/soundalike
# A user of its own, not root. Without --weights/--pca or SOUNDALIKE_WEIGHTS/SOUNDALIKE_PCA, soundalike looks
# for the official file names in ~/.local/share/soundalike, which is /models here: mounting a directory holding
# vggish-10086976.pth and vggish_pca_params.npz is enough; other names are given through the two variables.
RUN groupadd --gid 10001 soundalike \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/soundalike \
        --shell /usr/sbin/nologin soundalike \
    && mkdir -p /data /models /home/soundalike/.local/share \
    && ln -s /models /home/soundalike/.local/share/soundalike \
    && chown -R soundalike:soundalike /home/soundalike
# /data holds the index (built with `soundalike index`, mounted read-only is fine); /models the VGGish files.
VOLUME ["/data", "/models"]
USER 10001:10001
WORKDIR /home/soundalike
EXPOSE 8080
# No curl in the image: bash asks /healthz over /dev/tcp and passes on an HTTP 200 (the index can be read).
# It asks port 8080: a server moved to another port needs its own --health-cmd.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["soundalike"]
# --grace 8: `docker stop` sends SIGTERM and kills 10 s later; the requests in flight get 8 of them, and the
# server exits 0 before the kill (run with `docker stop -t 35` and `--grace 30` for long uploads).
CMD ["serve", "--index", "/data/index", "--listen", "0.0.0.0:8080", "--grace", "8"]
