{
  description = "Psyche run-manager: CLI to join Psyche decentralized training runs, Solana chain layer, local chain, reference client";

  # nixos-unstable: solana-py 0.41 needs websockets >= 16 and pydantic >= 2.13. `nix flake lock` pins it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      # solders ships a compiled wheel; the one pinned below is x86_64 Linux. Add a system with its wheel hash.
      systems = [ "x86_64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # PyPI wheels for what nixpkgs lacks (solana-py, httpx2, httpcore2) or has too old (solders 0.27).
      # URLs and hashes are PyPI's own for the exact files pip resolves for pyproject.toml's pins.
      wheel = pkgs: ps: { pname, version, path, file, hash, deps ? [ ] }:
        ps.buildPythonPackage {
          inherit pname version;
          format = "wheel";
          src = pkgs.fetchurl {
            url = "https://files.pythonhosted.org/packages/${path}/${file}";
            inherit hash;
          };
          dependencies = deps;
          # Their metadata pins versions a little apart from nixpkgs'; the import check below is the real test.
          dontCheckRuntimeDeps = true;
          pythonImportsCheck = [ (builtins.replaceStrings [ "-" ] [ "_" ] pname) ];
        };

      pythonFor = pkgs:
        let
          python = pkgs.python311.override {
            self = python;
            packageOverrides = final: prev: pythonOverrides (wheel pkgs final) final;
          };
        in
        python;

      pythonOverrides = pyWheel: final: {
        solders = pyWheel {
          pname = "solders";
          version = "0.29.0";
          path = "a9/16/014a7b58d12332420947ae49ed7c7efd030c196d64d58a2944ebdc0f8a88";
          file = "solders-0.29.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
          hash = "sha256-AFJLr1da5e2yukPNsdgEkcWe/cFrSP7Jam+SnAQB0OQ=";
          deps = [ final.jsonalias final.typing-extensions ];
        };
        httpcore2 = pyWheel {
          pname = "httpcore2";
          version = "2.16.2";
          path = "2a/e8/009c347feac27f8960605aa98d55ed263b5870dd4fd80b82fd1d00d5716c";
          file = "httpcore2-2.16.2-py3-none-any.whl";
          hash = "sha256-FgUa4qQvd2AHVD8y3pNJoxeyPSy7ThRWtLrA6IuHQZo=";
          deps = [ final.h11 final.h2 final.truststore ];
        };
        httpx2 = pyWheel {
          pname = "httpx2";
          version = "2.16.2";
          path = "77/de/8c4306a3d6aa2495111986addf33a9e561eff4c47552e4c4b9251160d0ad";
          file = "httpx2-2.16.2-py3-none-any.whl";
          hash = "sha256-8FwTqt5MRdvxyQYGR6EFjwrK1iOY+tludBJp7bM9RvU=";
          deps = [ final.anyio final.httpcore2 final.idna final.truststore final.typing-extensions ];
        };
        solana = pyWheel {
          pname = "solana";
          version = "0.41.0";
          path = "ab/05/c6795aa0f5240b7698475e6434c0e1dcaa7657b55cb6361cf4859886a3fb";
          file = "solana-0.41.0-py3-none-any.whl";
          hash = "sha256-e47875ONdblKYumVOD9Z9otWawoBrRaUymJZFWDafkc=";
          deps = [ final.aiolimiter final.construct-typing final.httpx2 final.pydantic final.solders final.websockets ];
        };
      };

      # pyproject.toml's [project] dependencies, by nixpkgs attribute name.
      runtimeDeps = ps: with ps; [ click docker solders python-dotenv httpx websockets rich ];
      # solana-py is the tests' independent client for the local chain; nothing at run time imports it.
      devDeps = ps: with ps; [ solana pytest hypothesis mypy ];
    in
    {
      packages = forAllSystems (pkgs:
        let py = pythonFor pkgs; in {
          default = py.pkgs.buildPythonApplication {
            pname = "psyche-run-manager";
            version = "0.2.0";
            pyproject = true;
            src = pkgs.lib.cleanSource ./.;
            build-system = [ py.pkgs.hatchling ];
            dependencies = runtimeDeps py.pkgs;
            pythonRelaxDeps = true;
            # The suite needs a Docker engine and a loopback registry, which the build sandbox lacks; it runs
            # through scripts/test (CI: .ci/run). The import check still catches a broken package.
            doCheck = false;
            pythonImportsCheck = [ "psyche" "psyche.chain.layout" ];
            meta = {
              description = "Join Psyche decentralized training runs from a GPU machine";
              license = pkgs.lib.licenses.asl20;
              mainProgram = "run-manager";
            };
          };
        });

      devShells = forAllSystems (pkgs:
        let py = pythonFor pkgs; in {
          default = pkgs.mkShell {
            packages = [
              (py.withPackages (ps: runtimeDeps ps ++ devDeps ps))
              pkgs.ruff
              pkgs.just
              pkgs.docker
              pkgs.podman
              pkgs.distribution
              pkgs.busybox
            ];
            # scripts/services defaults to Debian's names; point it at nixpkgs' docker CLI and registry.
            shellHook = ''
              export PSYCHE_DOCKER_CLI=${pkgs.docker}/bin/docker
              export PSYCHE_REGISTRY_BIN=${pkgs.distribution}/bin/registry
            '';
          };
        });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        devShell = self.devShells.${pkgs.stdenv.hostPlatform.system}.default;
      });
    };
}
